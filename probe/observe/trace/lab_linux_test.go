package trace

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// dialIn connects to addr from a socket created inside the namespace.
func dialIn(t testing.TB, nsName, addr string) *net.TCPConn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(nsName)
		if err == nil {
			err = netns.Set(h)
			h.Close()
		}
		if err != nil {
			ch <- res{nil, err}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		// Back home, or the thread stays locked and is thrown away.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- res{c, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("dial %s in %s: %v", addr, nsName, r.err)
	}
	return r.c.(*net.TCPConn)
}

// collector reads a Source in the background.
type collector struct {
	evs chan Event
	src *Source
}

func collect(t *testing.T, cfg Config) *collector {
	t.Helper()
	src, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	c := &collector{evs: make(chan Event, 10000), src: src}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ev, err := src.Next()
			if err != nil {
				return
			}
			c.evs <- ev
		}
	}()
	t.Cleanup(func() {
		src.Close()
		<-done
	})
	return c
}

// changes waits until the events of the connection (client end cl, in the
// two namespaces) fell quiet for quiet, or until deadline, and returns them
// as "client FROM → TO" / "server FROM → TO" lines.
func (c *collector) changes(t *testing.T, l lab.Lab, cl netip.AddrPort, quiet, deadline time.Duration) ([]string, []*Change) {
	t.Helper()
	cino, err := NetnsInode(l.ClientNS)
	if err != nil {
		t.Fatal(err)
	}
	sino, _ := NetnsInode(l.ServerNS)
	var lines []string
	var chs []*Change
	end := time.After(deadline)
	q := time.NewTimer(quiet)
	for {
		select {
		case ev := <-c.evs:
			ch := ev.Change
			if ch == nil {
				continue
			}
			var who string
			switch {
			case ch.Netns == cino && ch.Local == cl:
				who = "client"
			case ch.Netns == sino && ch.Remote == cl:
				who = "server"
			default:
				continue
			}
			s := fmt.Sprintf("%s %v → %v", who, ch.From, ch.To)
			if ch.Polled {
				s += " (polled)"
			}
			if ch.Note != "" {
				t.Logf("%s: %s", s, ch.Note)
			}
			lines = append(lines, s)
			chs = append(chs, ch)
			q.Reset(quiet)
		case <-q.C:
			return lines, chs
		case <-end:
			return lines, chs
		}
	}
}

func byEnd(lines []string, who string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, who+" ") {
			out = append(out, strings.TrimPrefix(l, who+" "))
		}
	}
	return out
}

func setSysctl(t *testing.T, nsName, name, value string) {
	t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	if out, err := exec.Command("ip", "netns", "exec", nsName, "sh", "-c", "echo "+value+" > "+path).CombinedOutput(); err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v: %s", name, value, nsName, err, out)
	}
}

// sendAndClose sends a byte and closes: the socket is orphaned.
func sendAndClose(t *testing.T, c *net.TCPConn) {
	c.Write([]byte("x"))
	time.Sleep(10 * time.Millisecond)
	c.Close()
}

// TestLabWatchCloseVariants holds the exact transitions on both ends for
// every way the lab server closes (and a reset), from a kernel connect() in
// the client namespace.
func TestLabWatchCloseVariants(t *testing.T) {
	l := labtest.New(t, labtest.HoldAfterEOF(1500*time.Millisecond))
	// An orphaned FIN-WAIT-2 timewait socket ends after tcp_fin_timeout:
	// 1 s, so its end is seen within the test.
	setSysctl(t, l.ClientNS, "net.ipv4.tcp_fin_timeout", "1")
	col := collect(t, Config{})
	handshake := []string{"CLOSED → SYN-SENT", "SYN-SENT → ESTABLISHED"}
	srvOpen := []string{"LISTEN → SYN-RECEIVED", "SYN-RECEIVED → ESTABLISHED"}
	cases := []struct {
		name   string
		port   int
		setup  func(t *testing.T)
		run    func(t *testing.T, c *net.TCPConn)
		client []string
		server []string
		quiet  time.Duration
	}{
		{
			name: "echo, we close first", port: 7,
			run: func(t *testing.T, c *net.TCPConn) {
				c.Write([]byte("hi\n"))
				io.ReadFull(c, make([]byte, 3))
				c.CloseWrite() // still ours: FIN-WAIT-2 is a full socket until the server's FIN
				io.Copy(io.Discard, c)
				c.Close()
			},
			client: append(handshake, "ESTABLISHED → FIN-WAIT-1", "FIN-WAIT-1 → FIN-WAIT-2", "FIN-WAIT-2 → TIME-WAIT"),
			server: append(srvOpen, "ESTABLISHED → CLOSE-WAIT", "CLOSE-WAIT → LAST-ACK", "LAST-ACK → CLOSED"),
		},
		{
			name: "http, the server closes first", port: 80,
			run: func(t *testing.T, c *net.TCPConn) {
				c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
				io.Copy(io.Discard, c)
				time.Sleep(20 * time.Millisecond)
				c.Close()
			},
			client: append(handshake, "ESTABLISHED → CLOSE-WAIT", "CLOSE-WAIT → LAST-ACK", "LAST-ACK → CLOSED"),
			server: append(srvOpen, "ESTABLISHED → FIN-WAIT-1", "FIN-WAIT-1 → FIN-WAIT-2", "FIN-WAIT-2 → TIME-WAIT"),
		},
		{
			name: "half, the server half-closes first", port: 13,
			run: func(t *testing.T, c *net.TCPConn) {
				io.Copy(io.Discard, c)
				time.Sleep(20 * time.Millisecond)
				c.Close()
			},
			client: append(handshake, "ESTABLISHED → CLOSE-WAIT", "CLOSE-WAIT → LAST-ACK", "LAST-ACK → CLOSED"),
			server: append(srvOpen, "ESTABLISHED → FIN-WAIT-1", "FIN-WAIT-1 → FIN-WAIT-2", "FIN-WAIT-2 → TIME-WAIT"),
		},
		{
			// close(2) orphans our socket: FIN-WAIT-2 moves into a timewait
			// socket, which tcp_fin_timeout (1 s) ends before the server,
			// holding CLOSE-WAIT for 1.5 s, sends its FIN; that FIN then
			// meets no socket and draws a reset.
			name: "hold, we close and the server waits", port: 9,
			run:    sendAndClose,
			client: append(handshake, "ESTABLISHED → FIN-WAIT-1", "FIN-WAIT-1 → FIN-WAIT-2", "FIN-WAIT-2 → CLOSED (polled)"),
			server: append(srvOpen, "ESTABLISHED → CLOSE-WAIT", "CLOSE-WAIT → LAST-ACK", "LAST-ACK → CLOSED"),
			quiet:  2500 * time.Millisecond,
		},
		{
			// The same with the default tcp_fin_timeout (60 s): the
			// timewait socket in FIN-WAIT-2 gets the server's FIN, moves to
			// TIME-WAIT (no tracepoint) and frees the FIN: seen at its time.
			name: "hold, the FIN reaches our timewait socket", port: 9,
			setup:  func(t *testing.T) { setSysctl(t, l.ClientNS, "net.ipv4.tcp_fin_timeout", "60") },
			run:    sendAndClose,
			client: append(handshake, "ESTABLISHED → FIN-WAIT-1", "FIN-WAIT-1 → FIN-WAIT-2", "FIN-WAIT-2 → TIME-WAIT"),
			server: append(srvOpen, "ESTABLISHED → CLOSE-WAIT", "CLOSE-WAIT → LAST-ACK", "LAST-ACK → CLOSED"),
			quiet:  2500 * time.Millisecond,
		},
		{
			name: "reset", port: 7,
			run: func(t *testing.T, c *net.TCPConn) {
				c.SetLinger(0)
				c.Close()
			},
			client: append(handshake, "ESTABLISHED → CLOSED"),
			server: append(srvOpen, "ESTABLISHED → CLOSED"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			c := dialIn(t, l.ClientNS, netip.AddrPortFrom(l.ServerV4, uint16(tc.port)).String())
			cl := netip.MustParseAddrPort(c.LocalAddr().String())
			tc.run(t, c)
			quiet := tc.quiet
			if quiet == 0 {
				quiet = 300 * time.Millisecond
			}
			lines, _ := col.changes(t, l, cl, quiet, 10*time.Second)
			if diff := cmp.Diff(tc.client, byEnd(lines, "client")); diff != "" {
				t.Errorf("client %v (-want +got):\n%s\nall: %q", cl, diff, lines)
			}
			if diff := cmp.Diff(tc.server, byEnd(lines, "server")); diff != "" {
				t.Errorf("server (-want +got):\n%s\nall: %q", diff, lines)
			}
		})
	}
}
