package app

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"tcpshake/capture"
)

func TestRouteMSS(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("2001:db8::2")
	for _, tt := range []struct {
		mtu  int
		dst  netip.Addr
		want uint16
	}{
		{1500, v4, 1460},
		{1500, v6, 1440},
		{1280, v6, 1220},
		{1280, v4, 1240},
		{9000, v4, 8960},
		{0, v4, 536},  // unknown MTU: RFC 9293's default
		{0, v6, 1220}, // unknown MTU: RFC 8200's minimum less the headers
	} {
		if got := routeMSS(capture.Route{MTU: tt.mtu}, tt.dst); got != tt.want {
			t.Errorf("MTU %d to %v: MSS %d, want %d", tt.mtu, tt.dst, got, tt.want)
		}
	}
}

// TestFriendlyCapabilities checks the one-line errors for missing
// privileges: --observe-netns names CAP_SYS_ADMIN and how to grant it; a
// route's or a firewall's EACCES/EPERM draws no capability advice.
func TestFriendlyCapabilities(t *testing.T) {
	perm := &os.PathError{Op: "setns", Path: "/run/netns/srv", Err: syscall.EPERM}
	got := Friendly(observeError("srv", fmt.Errorf("observe: sock_diag in \"srv\": %w", perm)))
	for _, want := range []string{"--observe-netns srv", "needs CAP_SYS_ADMIN", "operation not permitted", "setcap cap_net_raw,cap_net_admin,cap_sys_admin+ep"} {
		if !strings.Contains(got, want) {
			t.Errorf("observe error %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "\n") {
		t.Errorf("observe error is more than one line: %q", got)
	}
	// Other observer errors stay usage errors without capability advice.
	if got := Friendly(observeError("nosuch", errors.New("observe: network namespace \"nosuch\": no such file or directory"))); strings.Contains(got, "CAP_") {
		t.Errorf("a missing namespace is blamed on a capability: %q", got)
	}
	for _, errno := range []syscall.Errno{syscall.EPERM, syscall.EACCES} {
		re := &capture.RouteError{Dst: netip.MustParseAddr("198.51.100.2"), Err: errno}
		if got := Friendly(re); strings.Contains(got, "setcap") || strings.Contains(got, "CAP_") {
			t.Errorf("Friendly(%v route error) = %q: advice about capabilities for a routing refusal", errno, got)
		}
	}
	if got := Friendly(perm); !strings.Contains(got, "setcap cap_net_raw,cap_net_admin+ep") {
		t.Errorf("Friendly(EPERM) = %q, want the usual capability advice", got)
	}
}
