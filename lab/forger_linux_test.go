package lab_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// TestForgerKernelBaseline brings up a lab whose link runs through the forger's bridge, checks that both
// families still reach the server, and then echoes 1 MB with the client's own kernel TCP while the forger floods
// the link and forges segments into that very connection. The kernel must come through byte-exact: it proves
// the forger's traffic is what a correct TCP survives (so a tcpshake failure under it is tcpshake's), and that
// Flood and Forge really send (their counts, and the kernel's own counters of what it rejected).
//
// Every forgery but one: Linux (6.18) takes data whose ack lies far below SND.UNA when the segment matches its
// header prediction (the fast path queues the data before tcp_ack's RFC 5961 §5.2 check can discard it), so with
// ForgeAckBelow the kernel's stream is corrupted and the transfer stalls. tcpshake must discard those too.
func TestForgerKernelBaseline(t *testing.T) {
	t.Parallel()
	l := labtest.New(t, labtest.Forger())
	st, err := l.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.Ready() || !st.ForgerNS {
		t.Fatalf("lab with forger not ready:\n%s", st)
	}
	for _, a := range []netip.Addr{l.ServerV4, l.ServerV6} {
		c := mustDial(t, l, a, lab.PortEcho)
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo over %v through the bridge: %q, %v", a, buf, err)
		}
		c.Close()
	}

	payload := make([]byte, 1<<20)
	rand.Read(payload)
	c := mustDial(t, l, l.ServerV4, lab.PortEcho)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	cport := uint16(c.LocalAddr().(*net.TCPAddr).Port)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	var flood lab.FloodStats
	var forge lab.ForgeStats
	var floodErr, forgeErr error
	ready := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		flood, floodErr = l.Flood(ctx, lab.FloodConfig{Packets: 100_000, Rate: 30_000, Duration: 10 * time.Second,
			ClientPort: cport, ServerPort: lab.PortEcho})
	}()
	go func() {
		defer wg.Done()
		forge, forgeErr = l.Forge(ctx, lab.ForgeConfig{ServerPort: lab.PortEcho, ClientPort: cport, Max: 2000, Kinds: lab.ForgeAll &^ lab.ForgeAckBelow,
			Duration: 20 * time.Second, Ready: func() { close(ready) }})
	}()
	<-ready
	before, err := netstatClient(l)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		got <- b
	}()
	start := time.Now()
	// Paced (4 KiB every 2 ms, about half a second) so that the flood and the forger act during the transfer.
	for off := 0; off < len(payload); off += 4 << 10 {
		if _, err := c.Write(payload[off : off+4<<10]); err != nil {
			t.Fatalf("write: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.CloseWrite()
	echo := <-got
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	if floodErr != nil || forgeErr != nil {
		t.Fatalf("flood: %v; forge: %v", floodErr, forgeErr)
	}
	if !bytes.Equal(echo, payload) {
		t.Fatalf("the kernel's echo of 1 MB differs: got %d bytes", len(echo))
	}
	after, err := netstatClient(l)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel: 1 MB echoed byte-exact in %v; flood %d frames in %v; forge %+v (forged %d)", elapsed,
		flood.Sent, flood.Elapsed, forge, forge.Forged())
	t.Logf("client kernel counters: TCPACKSkippedSeq +%d, TCPChallengeACK +%d, TCPOFOQueue +%d, DelayedACKLost +%d",
		after["TCPACKSkippedSeq"]-before["TCPACKSkippedSeq"], after["TCPChallengeACK"]-before["TCPChallengeACK"],
		after["TCPOFOQueue"]-before["TCPOFOQueue"], after["DelayedACKLost"]-before["DelayedACKLost"])
	if flood.Sent == 0 {
		t.Error("the flood sent nothing")
	}
	if forge.Seen == 0 || forge.Duplicate == 0 || forge.Reordered == 0 || forge.AckAbove == 0 || forge.OutOfWindow == 0 {
		t.Errorf("the forger did not send every kind: %+v", forge)
	}
}

// netstatClient reads the client namespace's TcpExt counters.
func netstatClient(l lab.Lab) (map[string]int64, error) { return lab.Netstat(l.ClientNS) }

// TestFloodIsBounded checks that Flood stops at its packet count, keeps to its rate, and refuses unbounded
// configurations and labs without a forger.
func TestFloodIsBounded(t *testing.T) {
	t.Parallel()
	l := labtest.New(t, labtest.Forger())
	start := time.Now()
	st, err := l.Flood(t.Context(), lab.FloodConfig{Packets: 5000, Rate: 50_000, Duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 5000 {
		t.Errorf("sent %d, want 5000", st.Sent)
	}
	if d := time.Since(start); d < 80*time.Millisecond || d > 3*time.Second {
		t.Errorf("5000 frames at 50,000/s took %v, want about 100 ms", d)
	}
	st, err = l.Flood(t.Context(), lab.FloodConfig{Packets: 1_000_000, Rate: 10_000, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent > 2500 || st.Elapsed > time.Second {
		t.Errorf("a 200 ms flood at 10,000/s sent %d in %v", st.Sent, st.Elapsed)
	}
	for _, bad := range []lab.FloodConfig{
		{Packets: 0, Duration: time.Second},
		{Packets: lab.MaxFloodPackets + 1, Duration: time.Second},
		{Packets: 10, Duration: 0},
		{Packets: 10, Duration: time.Hour},
	} {
		if _, err := l.Flood(t.Context(), bad); err == nil {
			t.Errorf("Flood(%+v) accepted", bad)
		}
	}
	plain := lab.New(l.Name)
	if _, err := plain.Flood(t.Context(), lab.FloodConfig{Packets: 1, Duration: time.Second}); err == nil {
		t.Error("Flood on a Lab without Forger set accepted")
	}
}

// TestSynCookies sets tcp_syncookies=2 in the server and checks that a connection then gets a cookie (the
// kernel's SyncookiesSent and SyncookiesRecv count it) and still works.
func TestSynCookies(t *testing.T) {
	t.Parallel()
	l := labtest.New(t, labtest.SynCookies(2))
	if mode, err := l.SynCookies(); err != nil || mode != 2 {
		t.Fatalf("SynCookies() = %d, %v; want 2", mode, err)
	}
	before, err := lab.Netstat(l.ServerNS)
	if err != nil {
		t.Fatal(err)
	}
	c := mustDial(t, l, l.ServerV4, lab.PortEcho)
	c.Write([]byte("x"))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("echo under SYN cookies: %v", err)
	}
	after, err := lab.Netstat(l.ServerNS)
	if err != nil {
		t.Fatal(err)
	}
	if after["SyncookiesSent"] <= before["SyncookiesSent"] || after["SyncookiesRecv"] <= before["SyncookiesRecv"] {
		t.Errorf("no cookie counted: SyncookiesSent %d → %d, SyncookiesRecv %d → %d", before["SyncookiesSent"],
			after["SyncookiesSent"], before["SyncookiesRecv"], after["SyncookiesRecv"])
	}
	if st, _ := l.Status(); st.SynCookies != 2 {
		t.Errorf("Status().SynCookies = %d, want 2", st.SynCookies)
	}
	if err := l.SetSynCookies(3); err == nil {
		t.Error("SetSynCookies(3) accepted")
	}
}

// TestV4OnlyListener checks the IPv4-only echo: it answers over IPv4 and is refused over IPv6.
func TestV4OnlyListener(t *testing.T) {
	t.Parallel()
	l := labtest.New(t)
	c := mustDial(t, l, l.ServerV4, lab.PortV4Only)
	c.Write([]byte("v4"))
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "v4" {
		t.Fatalf("IPv4-only echo over IPv4: %q, %v", b, err)
	}
	if c, err := dial(t, l, l.ServerV6, lab.PortV4Only, 3*time.Second); err == nil {
		c.Close()
		t.Fatal("an IPv6 connection to the IPv4-only port was accepted")
	}
}
