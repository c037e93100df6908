package lab

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string
	}{
		{"tcpshake", ""},
		{"t0a1b2c3d", ""},
		{"my-lab-2", ""},
		{"", "empty"},
		{"Upper", "only a-z"},
		{"under_score", "only a-z"},
		{"dot.ted", "only a-z"},
		{"-lead", "starts or ends"},
		{"trail-", "starts or ends"},
		{strings.Repeat("a", 25), "longer than 24"},
		{strings.Repeat("a", 24), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.name)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tt.wantErr == "") != (err == nil) || !strings.Contains(got, tt.wantErr) {
				t.Errorf("ValidateName(%q) = %v, want error containing %q", tt.name, err, tt.wantErr)
			}
		})
	}
}

func TestNew(t *testing.T) {
	got := New("")
	want := Lab{
		Name:         DefaultName,
		ClientNS:     "tcpshake-client",
		ServerNS:     "tcpshake-server",
		ForgerNS:     "tcpshake-forger",
		ClientIf:     "veth0",
		ServerIf:     "veth0",
		ClientV4:     netip.MustParseAddr("198.51.100.1"),
		ServerV4:     netip.MustParseAddr("198.51.100.2"),
		ClientV6:     netip.MustParseAddr("2001:db8::1"),
		ServerV6:     netip.MustParseAddr("2001:db8::2"),
		HoldAfterEOF: DefaultHoldAfterEOF,
		IdleTimeout:  DefaultIdleTimeout,
		RunDir:       DefaultRunDir,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("New(\"\") (-want +got):\n%s", diff)
	}
	if err := got.check(); err != nil {
		t.Errorf("check of the default lab: %v", err)
	}
	if diff := cmp.Diff("/run/tcpshake/tcpshake.pid", got.PIDFile()); diff != "" {
		t.Errorf("PIDFile (-want +got):\n%s", diff)
	}
}

func TestCheckRefusesOutsideAddresses(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Lab)
	}{
		{"bad name", func(l *Lab) { l.Name = "Bad" }},
		{"same namespaces", func(l *Lab) { l.ServerNS = l.ClientNS }},
		{"public v4", func(l *Lab) { l.ServerV4 = netip.MustParseAddr("8.8.8.8") }},
		{"loopback v4", func(l *Lab) { l.ClientV4 = netip.MustParseAddr("127.0.0.1") }},
		{"other v6", func(l *Lab) { l.ServerV6 = netip.MustParseAddr("2001:db8:1::2") }},
		{"zero address", func(l *Lab) { l.ClientV6 = netip.Addr{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New("x")
			tt.modify(&l)
			if err := l.check(); err == nil {
				t.Errorf("check() = nil, want an error")
			}
		})
	}
}

func TestStatusString(t *testing.T) {
	tests := []struct {
		name string
		s    Status
		want string
	}{
		{
			name: "nothing",
			s:    Status{Name: "lab", Missing: []string{"namespace lab-client", "namespace lab-server"}},
			want: `lab lab
  namespaces: client missing, server missing
  link:       missing
  firewall:   missing
  daemon:     not running
  listening:  nothing
  not ready, missing:
    - namespace lab-client
    - namespace lab-server
`,
		},
		{
			name: "ready with loss",
			s: Status{
				Name: "lab", ClientNS: true, ServerNS: true, Link: true, Firewall: true, LossPercent: 25,
				DaemonPID: 42,
				Listening: []netip.AddrPort{
					netip.MustParseAddrPort("198.51.100.2:7"), netip.MustParseAddrPort("[2001:db8::2]:7"),
				},
			},
			want: `lab lab
  namespaces: client ok, server ok
  link:       ok
  firewall:   ok (random loss 25%)
  daemon:     running, pid 42
  listening:  198.51.100.2:7 [2001:db8::2]:7
  ready
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.s.String()); diff != "" {
				t.Errorf("String() (-want +got):\n%s", diff)
			}
		})
	}
}
