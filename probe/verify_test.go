package probe_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"tcpshake/capture"
	"tcpshake/craft"
	"tcpshake/event"
	"tcpshake/internal/tcppeer"
	"tcpshake/probe"
)

// verifyLab plays one scripted peer per port of one host, each on its own
// matcher, and counts the guard's holds.
type verifyLab struct {
	t     *testing.T
	peers map[uint16]*tcppeer.Peer

	mu          sync.Mutex
	held, freed int
	lport       uint16
}

func (l *verifyLab) Hold(local, remote netip.AddrPort) (func() error, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held++
	return func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.freed++
		return nil
	}, nil
}

func (l *verifyLab) dial(dst netip.AddrPort, sink event.Sink) (*probe.Session, func(), error) {
	peer := l.peers[dst.Port()]
	m := capture.NewMatcher()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, peer) }()
	l.mu.Lock()
	l.lport++
	local := netip.AddrPortFrom(sessLocal.Addr(), 40000+l.lport)
	l.mu.Unlock()
	s := probe.NewSession(probe.SessionConfig{
		Host: dst.Addr().String(), Local: local, Remote: dst, Window: 64240, TTL: 64,
		SYN: craft.SYNOptionSet{MSS: 1460, WScale: -1}, RTO: 500 * time.Millisecond, Retries: 2,
		TimeWait: probe.NoTimeWait, Timeout: time.Second,
	}, probe.SessionEnv{
		Env:   probe.Env{Sender: peer, Matcher: m, Sink: sink, Now: time.Now, Rand: func() uint32 { return 100 }},
		Guard: l,
	})
	return s, func() {
		cancel()
		if err := <-done; err != nil {
			l.t.Errorf("matcher: %v", err)
		}
	}, nil
}

// host is the VerifyHost of the lab's peers, probed on probed ports.
func (l *verifyLab) host(probed int, windows map[uint16]uint16) probe.VerifyHost {
	h := probe.VerifyHost{Host: "peer", Addr: sessRemote.Addr(), Probed: probed}
	for p := uint16(1); p < 65535 && len(h.Open) < len(l.peers); p++ {
		if _, ok := l.peers[p]; ok {
			w, ok := windows[p]
			if !ok {
				w = 64240
			}
			h.Open = append(h.Open, event.Result{Addr: sessRemote.Addr().String(), Port: p, State: "open", Reason: "syn-ack", Window: &w})
		}
	}
	return h
}

// runVerify verifies every peer of l in a synctest bubble.
func runVerify(t *testing.T, cfg probe.VerifyConfig, peers map[uint16]*tcppeer.Peer, probed int) (probe.VerifyReport, *verifyLab) {
	t.Helper()
	l := &verifyLab{t: t, peers: peers}
	var rep probe.VerifyReport
	synctest.Test(t, func(t *testing.T) {
		rep = probe.Verify(t.Context(), cfg, []probe.VerifyHost{l.host(probed, nil)}, l.dial)
		time.Sleep(time.Second) // what is in flight arrives
		synctest.Wait()
	})
	return rep, l
}

func byPort(rep probe.VerifyReport) map[uint16]event.Verify {
	m := map[uint16]event.Verify{}
	for _, v := range rep.Ports {
		m[v.Port] = v
	}
	return m
}

// proxyPeer answers SYN-ACK with window 0 and no options, and resets the
// connection at our ACK, as nftables' synproxy does when no service is
// behind it.
func proxyPeer(isn craft.Seq) *tcppeer.Peer {
	p := tcppeer.New()
	p.Window, p.MSS, p.ResetAt, p.Echo, p.ISN = 0, 0, 2, false, isn
	return p
}

func TestVerifyBanner(t *testing.T) {
	banner := tcppeer.New()
	banner.Echo, banner.Greeting, banner.ISN = false, []byte("220 lab ESMTP\r\n"), 5000
	closer := tcppeer.New()
	closer.Echo, closer.Greeting, closer.CloseFirst, closer.ISN = false, []byte{0x16, 0x03, 0x01, 0x00, 0xff}, true, 7000
	rep, l := runVerify(t, probe.VerifyConfig{Wait: 2 * time.Second}, map[uint16]*tcppeer.Peer{25: banner, 443: closer}, 2)
	got := byPort(rep)
	v := got[25]
	if v.Verdict != event.VerifyAnswered || v.Bytes != 15 || string(v.Data) != "220 lab ESMTP\r\n" || !v.Handshake || !v.ResetSent || v.PeerClosed {
		t.Errorf("port 25: %+v", v)
	}
	// The data stopped: the wait ended 300 ms after it, not at 2 s.
	if v.WaitedMs > 600 {
		t.Errorf("port 25: waited %.0f ms after a banner that stopped", v.WaitedMs)
	}
	if !banner.Reset() {
		t.Error("port 25: the peer was not reset at the end")
	}
	v = got[443]
	if v.Verdict != event.VerifyAnswered || v.Bytes != 5 || !v.PeerClosed || v.Data.String() != "hex:16030100ff" {
		t.Errorf("port 443: %+v", v)
	}
	if len(rep.Notes) != 0 || rep.NotVerified != 0 {
		t.Errorf("notes %q, not verified %d", rep.Notes, rep.NotVerified)
	}
	if l.held != 2 || l.freed != 2 {
		t.Errorf("guard: %d held, %d freed; want 2 and 2", l.held, l.freed)
	}
}

func TestVerifyEcho(t *testing.T) {
	for _, tc := range []struct {
		hello   string
		verdict event.VerifyVerdict
		bytes   int
	}{
		{"", event.VerifySilent, 0},
		{"GET / HTTP/1.0\r\n\r\n", event.VerifyAnswered, 18},
	} {
		echo := tcppeer.New()
		rep, _ := runVerify(t, probe.VerifyConfig{Hello: []byte(tc.hello), Wait: time.Second}, map[uint16]*tcppeer.Peer{7: echo}, 1)
		v := byPort(rep)[7]
		if v.Verdict != tc.verdict || v.Bytes != tc.bytes || string(v.Data) != tc.hello || len(v.Evidence) != 0 {
			t.Errorf("hello %q: %+v", tc.hello, v)
		}
		if tc.hello == "" && (v.WaitedMs < 999 || v.WaitedMs > 1100) {
			t.Errorf("no hello: waited %.0f ms, want the whole 1 s", v.WaitedMs)
		}
	}
}

func TestVerifySYNProxy(t *testing.T) {
	real := tcppeer.New()
	real.ISN = 9000
	rep, _ := runVerify(t, probe.VerifyConfig{Hello: []byte("hi\n"), Wait: time.Second},
		map[uint16]*tcppeer.Peer{7: real, 2000: proxyPeer(1234)}, 3)
	got := byPort(rep)
	if v := got[7]; v.Verdict != event.VerifyAnswered || len(v.Evidence) != 0 {
		t.Errorf("the real port: %+v", v)
	}
	v := got[2000]
	if v.Verdict != event.VerifySYNProxy || !v.PeerReset || v.ResetSent || *v.SynAckWindow != 0 || v.SynAckOptions != "" {
		t.Fatalf("the proxy's port: %+v", v)
	}
	ev := strings.Join(v.Evidence, "\n")
	for _, want := range []string{"window 0", "no options", "reset the connection without sending data"} {
		if !strings.Contains(ev, want) {
			t.Errorf("evidence without %q:\n%s", want, ev)
		}
	}
}

// A proxy in front of a real service: window 0, but the data comes. The
// port is open, and the evidence is kept.
func TestVerifyProxyWithService(t *testing.T) {
	p := tcppeer.New()
	p.Window, p.MSS = 0, 0
	p.Echo, p.Greeting = false, []byte("SSH-2.0-lab\r\n")
	rep, _ := runVerify(t, probe.VerifyConfig{Wait: time.Second}, map[uint16]*tcppeer.Peer{22: p}, 1)
	v := byPort(rep)[22]
	if v.Verdict != event.VerifyAnswered || len(v.Evidence) != 2 || !strings.Contains(v.Why, "proxy in front of a real service") {
		t.Errorf("%+v", v)
	}
}

// A tarpit: every port probed answers SYN-ACK with a normal window and
// MSS, then says nothing. Only the host's evidence tells: every one of 64
// ports answered, or one ISN on several ports.
func TestVerifyTarpitHost(t *testing.T) {
	peers := map[uint16]*tcppeer.Peer{}
	for p := uint16(1); p <= 64; p++ {
		peers[p] = silentPeer()
		peers[p].ISN = craft.Seq(p) * 1000
	}
	rep, _ := runVerify(t, probe.VerifyConfig{Wait: 500 * time.Millisecond, Max: 4}, peers, 64)
	if len(rep.Ports) != 4 || rep.NotVerified != 60 {
		t.Fatalf("%d verified, %d not; want 4 and 60", len(rep.Ports), rep.NotVerified)
	}
	for _, v := range rep.Ports {
		ev := strings.Join(v.Evidence, "\n")
		if v.Verdict != event.VerifySYNProxy || !strings.Contains(ev, "every one of the 64 ports probed") || strings.Contains(ev, "same ISN") {
			t.Errorf("port %d: %s\n%s", v.Port, v.Verdict, ev)
		}
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "open? a SYN proxy or tarpit answers for this host") {
		t.Errorf("notes: %q", rep.Notes)
	}

	// Three ports among 100 probed, with one ISN.
	same := map[uint16]*tcppeer.Peer{1: silentPeer(), 2: silentPeer(), 3: silentPeer()} // ISN 2000 each
	rep, _ = runVerify(t, probe.VerifyConfig{Wait: 500 * time.Millisecond}, same, 100)
	for _, v := range rep.Ports {
		if ev := strings.Join(v.Evidence, "\n"); v.Verdict != event.VerifySYNProxy || !strings.Contains(ev, "3 ports of 198.51.100.2 answered with the same ISN 2000") {
			t.Errorf("port %d: %s\n%s", v.Port, v.Verdict, ev)
		}
	}

	// 8 of 8 ports open, each its own ISN, saying nothing unasked: a host
	// with 8 services, nothing to say.
	eight := map[uint16]*tcppeer.Peer{}
	for p := uint16(1); p <= 8; p++ {
		eight[p] = silentPeer()
		eight[p].ISN = craft.Seq(p) * 1000
	}
	rep, _ = runVerify(t, probe.VerifyConfig{Wait: 300 * time.Millisecond}, eight, 8)
	for _, v := range rep.Ports {
		if v.Verdict != event.VerifySilent || len(v.Evidence) != 0 {
			t.Errorf("port %d of 8 real ones: %s %q", v.Port, v.Verdict, v.Evidence)
		}
	}
	if len(rep.Notes) != 0 {
		t.Errorf("notes for 8 real ports: %q", rep.Notes)
	}
}

// A SYN-ACK without options (some embedded stacks) is shown, not judged.
func TestVerifyNoOptionsAlone(t *testing.T) {
	p := silentPeer()
	p.MSS = 0
	rep, _ := runVerify(t, probe.VerifyConfig{Wait: 300 * time.Millisecond}, map[uint16]*tcppeer.Peer{23: p}, 1)
	v := byPort(rep)[23]
	if v.Verdict != event.VerifySilent || len(v.Evidence) != 1 || !strings.Contains(v.Evidence[0], "no options") {
		t.Errorf("%+v", v)
	}
}

// silentPeer completes the handshake and then says nothing.
func silentPeer() *tcppeer.Peer {
	p := tcppeer.New()
	p.Echo = false
	return p
}

func TestVerifyNotVerifiedWindows(t *testing.T) {
	h := probe.VerifyHost{Addr: sessRemote.Addr(), Probed: 100}
	zero, big := uint16(0), uint16(64240)
	for _, p := range []struct {
		port uint16
		win  *uint16
	}{{12, &big}, {10, &zero}, {11, &zero}, {13, nil}} {
		h.Open = append(h.Open, event.Result{Addr: h.Addr.String(), Port: p.port, State: "open", Window: p.win})
	}
	rep := probe.Verify(t.Context(), probe.VerifyConfig{Max: 1}, []probe.VerifyHost{h},
		func(netip.AddrPort, event.Sink) (*probe.Session, func(), error) { return nil, nil, context.Canceled })
	if len(rep.Ports) != 1 || rep.Ports[0].Port != 12 || rep.Ports[0].Verdict != event.VerifyError || rep.NotVerified != 3 {
		t.Fatalf("%+v", rep)
	}
	want := []string{"198.51.100.2: 2 open ports not verified answered SYN-ACK with window 0, as a SYN proxy does"}
	if !slices.Equal(rep.Notes, want) {
		t.Errorf("notes %q, want %q", rep.Notes, want)
	}
}

func TestRenderBytes(t *testing.T) {
	for _, tc := range []struct {
		in    string
		width int
		want  string
	}{
		{"HTTP/1.0 200 OK\r\n", 40, `"HTTP/1.0 200 OK\r\n"`},
		{"say \"hi\"\t\\", 40, `"say \"hi\"\t\\"`},
		{"HTTP/1.0 200 OK\r\nServer: lab\r\n", 16, `"HTTP/1.0 200 O"…`},
		{"\x16\x03\x01\x00\xff", 40, "hex 16030100ff"},
		{"\x00\x01\x02\x03\x04\x05\x06\x07\x08", 12, "hex 000102…"},
		{"é ok", 40, `"é ok"`},
		{"\xff\xfe", 40, "hex fffe"},
		{"bell\a", 40, "hex 62656c6c07"},
	} {
		if got := probe.RenderBytes([]byte(tc.in), tc.width); got != tc.want {
			t.Errorf("RenderBytes(%q, %d) = %s, want %s", tc.in, tc.width, got, tc.want)
		}
	}
}
