package lab

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLWIPSockets(t *testing.T) {
	got, err := parseLWIPSockets("LISTEN [::]:7 *\nSYN_RCVD 198.51.100.2:9 198.51.100.1:40000\nTIME_WAIT [2001:db8::2]:80 [2001:db8::1]:5000\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []PeerSocket{
		{"LISTEN", "[::]:7", "*"},
		{"SYN-RECEIVED", "198.51.100.2:9", "198.51.100.1:40000"},
		{"TIME-WAIT", "[2001:db8::2]:80", "[2001:db8::1]:5000"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"ESTABLISHED 1.2.3.4:5\n", "BOGUS a b\n"} {
		if _, err := parseLWIPSockets(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
