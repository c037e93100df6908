package probe

import (
	"net/netip"
	"testing"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
)

// TestCookieJar: a cookie checks for its own connection and client ISN
// within its lifetime, names the MSS rounded down to its table, and fails
// for another port, another ISN, a flipped bit, or when it is too old.
func TestCookieJar(t *testing.T) {
	now := time.Unix(1_000_000*64, 0)
	j := NewCookieJar(func() time.Time { return now })
	k := capture.Key{Local: netip.MustParseAddrPort("198.51.100.2:8000"), Remote: netip.MustParseAddrPort("198.51.100.1:40000")}
	c := j.Make(k, 100, 1450)
	if c.mss != 1440 || c.index != 5 {
		t.Errorf("MSS 1450 is named %d (index %d), want 1440 (5)", c.mss, c.index)
	}
	if uint32(c.value)>>27 != uint32(now.Unix()/64)%32 {
		t.Errorf("cookie %#x: top 5 bits are not the time counter", uint32(c.value))
	}
	if got, ok, why := j.Check(k, 100, c.value); !ok || got.mss != 1440 {
		t.Fatalf("own cookie refused (%s), mss %d", why, got.mss)
	}
	other := k
	other.Remote = netip.MustParseAddrPort("198.51.100.1:40001")
	for name, tc := range map[string]struct {
		k   capture.Key
		isn craft.Seq
		v   craft.Seq
	}{
		"another port": {other, 100, c.value},
		"another ISN":  {k, 101, c.value},
		"a hash bit":   {k, 100, c.value ^ 1},
		"the MSS bits": {k, 100, c.value ^ 1<<24},
	} {
		if _, ok, _ := j.Check(tc.k, tc.isn, tc.v); ok {
			t.Errorf("%s: the cookie still checks", name)
		}
	}
	now = now.Add(64 * time.Second)
	if _, ok, why := j.Check(k, 100, c.value); !ok {
		t.Errorf("one period later the cookie is refused: %s", why)
	}
	now = now.Add(64 * time.Second)
	if _, ok, _ := j.Check(k, 100, c.value); ok {
		t.Error("two periods later the cookie still checks")
	}
	if c := j.Make(k, 100, 100); c.mss != 536 {
		t.Errorf("MSS 100 is named %d, want the table's least, 536", c.mss)
	}
}
