package capture

import (
	"net/netip"
	"testing"
)

// TestSipHashVectors checks SipHash-2-4 against the reference
// implementation's vectors (key 00..0f, message 00..n-1).
func TestSipHashVectors(t *testing.T) {
	var key [16]byte
	for i := range key {
		key[i] = byte(i)
	}
	c := NewCookie(key)
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, tc := range []struct {
		n    int
		want uint64
	}{
		{0, 0x726fdb47dd0e0e31},
		{1, 0x74f839c593dc67fd},
		{7, 0xab0200f58b01d137},
		{8, 0x93f5f5799a932462},
		{15, 0xa129ca6149be45e5},
		{63, 0x958a324ceb064572},
	} {
		if got := SipHash24(c.k0, c.k1, msg[:tc.n]); got != tc.want {
			t.Errorf("SipHash24(%d bytes) = %#x, want %#x", tc.n, got, tc.want)
		}
	}
}

func TestCookieCheck(t *testing.T) {
	c := NewCookie([16]byte{1, 2, 3})
	l := netip.MustParseAddrPort("198.51.100.1:40000")
	r := netip.MustParseAddrPort("198.51.100.2:80")
	for try := range MaxTries {
		isn := c.ISN(l, r, try)
		got, ok := c.Check(l, r, isn)
		if !ok || got != try {
			t.Errorf("Check(ISN try %d) = %d, %v", try, got, ok)
		}
		if _, ok := c.Check(l, netip.MustParseAddrPort("198.51.100.2:81"), isn); ok {
			t.Errorf("try %d: the cookie of port 80 is accepted for port 81", try)
		}
		if _, ok := c.Check(l, r, isn+MaxTries); ok {
			t.Errorf("try %d: a cookie off by %d is accepted", try, MaxTries)
		}
	}
	other := NewCookie([16]byte{1, 2, 4})
	if _, ok := other.Check(l, r, c.ISN(l, r, 0)); ok {
		t.Error("a cookie of another secret is accepted")
	}
}
