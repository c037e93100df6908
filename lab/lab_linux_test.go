package lab_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// helperArg makes the test binary act as a lab daemon: argv is [test binary, helperArg, lab name].
const helperArg = "lab-serve-helper"

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == helperArg {
		os.Exit(serveHelper(os.Args[2]))
	}
	os.Exit(m.Run())
}

// serveHelper is the daemon side of TestStartDaemon: it serves the lab until SIGTERM.
func serveHelper(name string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := lab.New(name).Serve(ctx, func() { fmt.Println("serving", name) })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// families are the two address families every reachability test runs over.
func families(l lab.Lab) []struct {
	name   string
	server netip.Addr
} {
	return []struct {
		name   string
		server netip.Addr
	}{{"ipv4", l.ServerV4}, {"ipv6", l.ServerV6}}
}

func dial(t *testing.T, l lab.Lab, server netip.Addr, port uint16, timeout time.Duration) (*net.TCPConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := l.Dial(ctx, "tcp", netip.AddrPortFrom(server, port).String())
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn), nil
}

func mustDial(t *testing.T, l lab.Lab, server netip.Addr, port uint16) *net.TCPConn {
	t.Helper()
	c, err := dial(t, l, server, port, 2*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

func TestUpIsIdempotent(t *testing.T) {
	t.Parallel()
	l := labtest.New(t)
	for i := range 2 {
		if err := l.Up(t.Context()); err != nil {
			t.Fatalf("Up #%d again: %v", i+2, err)
		}
	}
	st, err := l.Status()
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if !st.Ready() || !st.ClientNS || !st.ServerNS || !st.Link || !st.Firewall || st.LossPercent != 0 {
		t.Errorf("Status after repeated Up is not ready:\n%s", st)
	}
	var want []netip.AddrPort
	for _, a := range []netip.Addr{l.ServerV4, l.ServerV6} {
		for _, p := range []uint16{lab.PortEcho, lab.PortHold, lab.PortHalf, lab.PortHTTP} {
			want = append(want, netip.AddrPortFrom(a, p))
		}
	}
	want = append(want, netip.AddrPortFrom(netip.IPv4Unspecified(), lab.PortV4Only))
	less := func(a, b netip.AddrPort) bool { return a.Compare(b) < 0 }
	if diff := cmp.Diff(want, st.Listening, cmpAddrPorts(), cmpSort(less)); diff != "" {
		t.Errorf("Listening (-want +got):\n%s", diff)
	}
	// Nothing of the lab leaks into the root namespace.
	if out, err := exec.Command("ip", "-o", "link", "show").CombinedOutput(); err != nil {
		t.Fatalf("ip link: %v\n%s", err, out)
	} else if strings.Contains(string(out), l.Name) {
		t.Errorf("root namespace shows lab links:\n%s", out)
	}
	// The client reaches the server on both families right after Up (IPv6 skips DAD).
	for _, f := range families(l) {
		c := mustDial(t, l, f.server, lab.PortEcho)
		c.Close()
	}
}

func TestReachability(t *testing.T) {
	t.Parallel()
	l := labtest.New(t)
	tests := []struct {
		name    string
		port    uint16
		wantV4  error // nil: connects
		wantV6  error
		timeout bool // the dial must time out
	}{
		{name: "echo", port: lab.PortEcho},
		{name: "http", port: lab.PortHTTP},
		{name: "closed answers RST", port: lab.PortClosed, wantV4: syscall.ECONNREFUSED, wantV6: syscall.ECONNREFUSED},
		{name: "dropped", port: lab.PortDropped, timeout: true},
		// ICMP port unreachable (type 3 code 3; ICMPv6 type 1 code 4) is a hard error: ECONNREFUSED.
		// Over IPv6 the error for the first SYN arrives while connect() still holds the socket lock (veth delivers
		// it synchronously) and Linux drops it (TcpExtLockDroppedIcmps); the error for the SYN retransmitted after
		// 1 s aborts the connect. Hence the long dial timeout for these cases.
		{name: "rejected", port: lab.PortRejected, wantV4: syscall.ECONNREFUSED, wantV6: syscall.ECONNREFUSED},
		// ICMP communication administratively prohibited (type 3 code 13) maps to EHOSTUNREACH,
		// ICMPv6 administratively prohibited (type 1 code 1) to EACCES.
		{name: "prohibited", port: lab.PortProhibited, wantV4: syscall.EHOSTUNREACH, wantV6: syscall.EACCES},
	}
	for _, f := range families(l) {
		for _, tt := range tests {
			t.Run(f.name+"/"+tt.name, func(t *testing.T) {
				want := tt.wantV4
				if f.server.Is6() {
					want = tt.wantV6
				}
				timeout := 3 * time.Second
				if tt.timeout {
					timeout = 300 * time.Millisecond
				}
				c, err := dial(t, l, f.server, tt.port, timeout)
				switch {
				case tt.timeout:
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						t.Fatalf("dial error = %v, want a timeout", err)
					}
				case want != nil:
					if !errors.Is(err, want) {
						t.Fatalf("dial error = %v, want %v", err, want)
					}
				case err != nil:
					t.Fatalf("dial: %v", err)
				}
				if c == nil {
					return
				}
				switch tt.port {
				case lab.PortEcho:
					checkEcho(t, c)
				case lab.PortHTTP:
					checkHTTP(t, c)
				}
			})
		}
	}
}

func checkEcho(t *testing.T, c *net.TCPConn) {
	t.Helper()
	want := strings.Repeat("0123456789abcdef", 4096)
	errc := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, want)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	if string(got) != want {
		t.Errorf("echo returned %d bytes, want the %d sent back unchanged", len(got), len(want))
	}
}

func checkHTTP(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: lab\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c) // EOF: the server closed first
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if diff := cmp.Diff(lab.HTTPResponse(), string(got)); diff != "" {
		t.Errorf("http (-want +got):\n%s", diff)
	}
}

// waitState polls sock_diag in ns until the socket from local to remote is in state, bounded by 2 s.
func waitState(t *testing.T, ns string, local, remote netip.AddrPort, state uint8) {
	t.Helper()
	var last []lab.Sock
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		socks, err := lab.Sockets(ns)
		if err != nil {
			t.Fatalf("sockets: %v", err)
		}
		last = socks
		for _, s := range socks {
			if s.Local == local && s.Remote == remote && s.State == state {
				return
			}
		}
	}
	t.Fatalf("no socket %v -> %v in state %d in %s; have %+v", local, remote, state, ns, last)
}

func addrPortOf(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func TestHoldLeavesServerInCloseWait(t *testing.T) {
	t.Parallel()
	l := labtest.New(t)
	for _, f := range families(l) {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel() // each waits HoldAfterEOF
			c := mustDial(t, l, f.server, lab.PortHold)
			if _, err := io.WriteString(c, "to be discarded\n"); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			local, remote := addrPortOf(c.RemoteAddr()), addrPortOf(c.LocalAddr())
			waitState(t, l.ServerNS, local, remote, lab.TCPCloseWait)
			// Meanwhile the client is in FIN-WAIT-2: its FIN was acknowledged, the server's has not come.
			waitState(t, l.ClientNS, remote, local, lab.TCPFinWait2)
			if _, err := io.ReadAll(c); err != nil {
				t.Fatalf("read: %v", err)
			}
			if held := time.Since(start); held < lab.DefaultHoldAfterEOF-100*time.Millisecond {
				t.Errorf("server closed after %v, want about HoldAfterEOF %v", held, lab.DefaultHoldAfterEOF)
			}
		})
	}
}

func TestHalfServerClosesFirst(t *testing.T) {
	t.Parallel()
	l := labtest.New(t)
	for _, f := range families(l) {
		t.Run(f.name, func(t *testing.T) {
			c := mustDial(t, l, f.server, lab.PortHalf)
			got, err := io.ReadAll(c) // ends with the server's FIN; we have sent nothing
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if diff := cmp.Diff(lab.HalfBanner, string(got)); diff != "" {
				t.Errorf("banner (-want +got):\n%s", diff)
			}
			local, remote := addrPortOf(c.RemoteAddr()), addrPortOf(c.LocalAddr())
			waitState(t, l.ServerNS, local, remote, lab.TCPFinWait2)
			waitState(t, l.ClientNS, remote, local, lab.TCPCloseWait)
			// The half-closed server still reads.
			if _, err := io.WriteString(c, "late data\n"); err != nil {
				t.Fatalf("write after the server's FIN: %v", err)
			}
		})
	}
}

func TestSetLoss(t *testing.T) {
	t.Parallel()
	l := labtest.New(t)
	const attempts, parallel = 240, 24
	// lossRate dials the closed port: an answered SYN gives ECONNREFUSED at once, a dropped one times out (the
	// first SYN retransmission comes only after 1 s).
	lossRate := func(t *testing.T) float64 {
		t.Helper()
		var lost, other atomic.Int64
		var wg sync.WaitGroup
		sem := make(chan struct{}, parallel)
		for i := range attempts {
			server := l.ServerV4
			if i%2 == 1 {
				server = l.ServerV6
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				_, err := dial(t, l, server, lab.PortClosed, 300*time.Millisecond)
				var ne net.Error
				switch {
				case errors.Is(err, syscall.ECONNREFUSED):
				case errors.As(err, &ne) && ne.Timeout():
					lost.Add(1)
				default:
					other.Add(1)
					t.Errorf("dial: %v, want refused or timeout", err)
				}
			})
		}
		wg.Wait()
		return float64(lost.Load()) / attempts
	}

	if err := l.SetLoss(25); err != nil {
		t.Fatalf("SetLoss(25): %v", err)
	}
	st, err := l.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.LossPercent != 25 {
		t.Errorf("Status().LossPercent = %d, want 25", st.LossPercent)
	}
	if got := lossRate(t); got < 0.10 || got > 0.45 {
		t.Errorf("with SetLoss(25) %.0f%% of SYNs were lost, want 10-45%%", got*100)
	} else {
		t.Logf("with SetLoss(25) %.1f%% of %d SYNs were lost", got*100, attempts)
	}

	if err := l.SetLoss(0); err != nil {
		t.Fatalf("SetLoss(0): %v", err)
	}
	if got := lossRate(t); got != 0 {
		t.Errorf("with SetLoss(0) %.0f%% of SYNs were lost, want none", got*100)
	}
	// Up keeps the loss setting; Status reports it.
	if err := l.SetLoss(100); err != nil {
		t.Fatalf("SetLoss(100): %v", err)
	}
	if err := l.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st, err := l.Status(); err != nil || st.LossPercent != 100 {
		t.Errorf("after Up, Status() = %d%% loss, %v; want 100%%", st.LossPercent, err)
	}

	for _, bad := range []int{-1, 101} {
		if err := l.SetLoss(bad); err == nil {
			t.Errorf("SetLoss(%d) = nil, want an error", bad)
		}
	}
}

func TestSetLossNeedsLab(t *testing.T) {
	t.Parallel()
	labtest.RequireRoot(t)
	l := lab.New(labtest.Name(t))
	if err := l.SetLoss(10); err == nil {
		t.Error("SetLoss on a lab that is not up = nil, want an error")
	}
}

func TestDown(t *testing.T) {
	t.Parallel()
	labtest.RequireRoot(t)
	l := lab.New(labtest.Name(t))
	t.Cleanup(func() { l.Down() })
	if err := l.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{l.ClientNS, l.ServerNS} {
		if ok, err := lab.NSExists(ns); err != nil || !ok {
			t.Fatalf("namespace %s after Up: exists=%v err=%v", ns, ok, err)
		}
	}
	for i := range 2 {
		if err := l.Down(); err != nil {
			t.Fatalf("Down #%d: %v", i+1, err)
		}
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	if strings.Contains(string(out), l.Name) {
		t.Errorf("ip netns list still shows the lab after Down:\n%s", out)
	}
	st, err := l.Status()
	if err != nil {
		t.Fatalf("Status after Down: %v", err)
	}
	if st.ClientNS || st.ServerNS || st.Link || st.Firewall || st.DaemonPID != 0 || st.Ready() {
		t.Errorf("Status after Down shows leftovers:\n%s", st)
	}
}

func TestUpRepairsPartialState(t *testing.T) {
	t.Parallel()
	labtest.RequireRoot(t)
	l := lab.New(labtest.Name(t))
	t.Cleanup(func() { l.Down() })
	if err := l.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Break the lab the way a user might: delete the server namespace (which takes the veth pair with it).
	if out, err := exec.Command("ip", "netns", "delete", l.ServerNS).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete: %v\n%s", err, out)
	}
	st, err := l.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.ServerNS || st.Ready() {
		t.Fatalf("Status after deleting the server namespace:\n%s", st)
	}
	if err := l.Up(t.Context()); err != nil {
		t.Fatalf("Up on partial lab: %v", err)
	}
	st, err = l.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !st.ClientNS || !st.ServerNS || !st.Link || !st.Firewall {
		t.Errorf("Status after repairing Up:\n%s", st)
	}
}

func TestStartDaemon(t *testing.T) {
	t.Parallel()
	labtest.RequireRoot(t)
	l := lab.New(labtest.Name(t))
	l.RunDir = t.TempDir()
	t.Cleanup(func() { l.Down() })
	if err := l.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{exe, helperArg, l.Name}
	pid, err := l.StartDaemon(argv)
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	if pid2, err := l.StartDaemon(argv); err != nil || pid2 != pid {
		t.Errorf("second StartDaemon = %d, %v; want the running pid %d", pid2, err, pid)
	}
	st, err := l.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.DaemonPID != pid || !st.Ready() {
		t.Errorf("Status with daemon %d:\n%s", pid, st)
	}
	for _, f := range families(l) {
		t.Run(f.name, func(t *testing.T) { checkEcho(t, mustDial(t, l, f.server, lab.PortEcho)) })
	}

	if err := l.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		// A zombie not yet reaped by the Wait goroutine still accepts signal 0; give it a moment.
		time.Sleep(200 * time.Millisecond)
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("daemon %d still exists after Down (kill 0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(l.PIDFile()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pidfile after Down: %v, want it removed", err)
	}
}

func TestStartDaemonReportsFailure(t *testing.T) {
	t.Parallel()
	l := labtest.New(t) // the in-process server already holds the ports
	l.RunDir = t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.StartDaemon([]string{exe, helperArg, l.Name}); err == nil {
		t.Error("StartDaemon while another server holds the ports = nil, want an error")
	}
	l2 := lab.New(labtest.Name(t))
	l2.RunDir = t.TempDir()
	t.Cleanup(func() { l2.Down() })
	if err := l2.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, err = l2.StartDaemon([]string{"/bin/false"})
	if err == nil || !strings.Contains(err.Error(), "exited before listening") {
		t.Errorf("StartDaemon(/bin/false) = %v, want an exit error", err)
	}
}

func TestDo(t *testing.T) {
	t.Parallel()
	l := labtest.New(t)
	before, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	err = lab.Do(l.ClientNS, func() error {
		var err error
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if inside == before {
		t.Errorf("Do ran fn in the caller's namespace %s", inside)
	}
	sentinel := errors.New("sentinel")
	if err := lab.Do(l.ClientNS, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if err := lab.Do(labtest.Name(t)+"-none", func() error { return nil }); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Do in a missing namespace = %v, want ErrNotExist", err)
	}
}

func cmpAddrPorts() cmp.Option {
	return cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })
}

func cmpSort[T any](less func(a, b T) bool) cmp.Option {
	return cmp.Transformer("sort", func(in []T) []T {
		out := append([]T(nil), in...)
		for i := 1; i < len(out); i++ {
			for j := i; j > 0 && less(out[j], out[j-1]); j-- {
				out[j], out[j-1] = out[j-1], out[j]
			}
		}
		return out
	})
}

// TestNetnsDirIsSharedMount: once a lab exists, /run/netns is a mount point
// of its own with shared propagation, as ip makes it; a namespace file
// mounted on the plain directory would be hidden (and stuck) under the
// mount point that ip netns add makes later.
func TestNetnsDirIsSharedMount(t *testing.T) {
	labtest.New(t)
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[4] == "/run/netns" && strings.Contains(line, " shared:") {
			return
		}
	}
	t.Errorf("/run/netns is not a shared mount point:\n%s", info)
}
