package lab

import (
	"strings"
	"testing"
)

func TestValidatePeer(t *testing.T) {
	for _, p := range []string{"", PeerLinux, PeerLWIP} {
		if err := ValidatePeer(p); err != nil {
			t.Errorf("ValidatePeer(%q): %v", p, err)
		}
	}
	if err := ValidatePeer("bsd"); err == nil || !strings.Contains(err.Error(), "linux, lwip") {
		t.Errorf("ValidatePeer(bsd): %v, want an error naming the known peers", err)
	}
	l := New("x")
	l.Peer = "bsd"
	if err := l.check(); err == nil {
		t.Errorf("check with an unknown peer: no error")
	}
}

func TestStatusStringNamesThePeer(t *testing.T) {
	running := Status{Name: "x", Peer: PeerLWIP, DaemonPID: 42}.String()
	for _, want := range []string{"peer:       lwip (lwIP", "lwIP's own sockets"} {
		if !strings.Contains(running, want) {
			t.Errorf("running lwip status lacks %q:\n%s", want, running)
		}
	}
	stopped := Status{Name: "x", Peer: PeerLWIP}.String()
	if !strings.Contains(stopped, "nothing (the lwip peer is not running)") {
		t.Errorf("stopped lwip status does not say nothing listens:\n%s", stopped)
	}
	if linux := (Status{Name: "x", Peer: PeerLinux}).String(); !strings.Contains(linux, "peer:       linux (the server namespace's Linux kernel)") {
		t.Errorf("linux status does not name the peer:\n%s", linux)
	}
	if none := (Status{Name: "x"}).String(); strings.Contains(none, "peer:") {
		t.Errorf("status of a missing lab names a peer:\n%s", none)
	}
}
