//go:build linux

package app_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"tcpshake/craft"
	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// listenProc is `tcpshake listen` running in the lab's server namespace.
type listenProc struct {
	cmd          *exec.Cmd
	stdout       bytes.Buffer
	stderr       syncBuffer // read while listen runs
	done         chan struct{}
	code         int
	waitErr      error
	ready, early chan struct{}
}

// startListen starts listen with args in the server namespace and returns
// once it says it listens. The cleanup kills it if it still runs.
func startListen(t *testing.T, l lab.Lab, args ...string) *listenProc {
	t.Helper()
	return startServer(t, l, "", append([]string{"listen"}, args...)...)
}

// startServer starts tcpshake with args (listen, or shell --listen) and
// stdin in the server namespace, and returns once it says it listens.
func startServer(t *testing.T, l lab.Lab, stdin string, args ...string) *listenProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	p := &listenProc{done: make(chan struct{}), ready: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, binary(t), args...)
	p.cmd.Stdin = strings.NewReader(stdin)
	p.cmd.Stdout = &p.stdout
	pr, pw := io.Pipe()
	p.cmd.Stderr = pw
	if err := lab.Do(l.ServerNS, p.cmd.Start); err != nil {
		cancel()
		t.Fatalf("start listen: %v", err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			p.stderr.Write(append(sc.Bytes(), '\n'))
			if strings.Contains(sc.Text(), "listening on") {
				once.Do(func() { close(p.ready) })
			}
		}
	}()
	go func() {
		p.waitErr = p.cmd.Wait()
		pw.Close()
		<-scanned // all of stderr is in p.stderr
		var ee *exec.ExitError
		if errors.As(p.waitErr, &ee) {
			p.code = ee.ExitCode()
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	select {
	case <-p.ready:
	case <-p.done:
		t.Fatalf("listen exited before listening (status %d): %s", p.code, p.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("listen did not start within 10 s: %s", p.stderr.String())
	}
	return p
}

// wait waits for listen to exit and returns its status.
func (p *listenProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("listen did not exit within 30 s:\n%s\n%s", p.stdout.String(), p.stderr.String())
	}
	return p.code
}

// listenPort is a port nothing in the lab listens on.
func listenPort() uint16 { return 20000 + randomPort()%10000 }

// stepNums is "direction flags seq ack local remote" of a JSON step.
func stepLine(ev map[string]any) string {
	return fmt.Sprintf("%s %s S:%v A:%v %s %s", ev["direction"], ev["flags"], ev["seq"], ev["ack"], ev["local_state"], ev["remote_state"])
}

func wireSteps(evs []map[string]any) []string {
	var out []string
	for _, ev := range evs {
		if ev["type"] == "step" && (ev["direction"] == "sent" || ev["direction"] == "received") {
			out = append(out, stepLine(ev))
		}
	}
	return out
}

func summaryOf(t *testing.T, evs []map[string]any) map[string]any {
	t.Helper()
	for _, ev := range evs {
		if ev["type"] == "summary" {
			return ev
		}
	}
	t.Fatal("no summary event")
	return nil
}

// TestListenTextbook runs the teaching texts' exchange: tcpshake handshake
// --isn 100 against tcpshake listen --isn 2000 prints SYN S:100 A:0,
// SYN+ACK S:2000 A:101, ACK S:101 A:2001 and PSH+ACK S:101 A:2001 with both
// ends' states, and the capture listen wrote (-w) holds those numbers on
// the wire. Both count 3 + 2 + 4 = 9 segments.
func TestListenTextbook(t *testing.T) {
	l := labtest.New(t)
	port := fmt.Sprint(listenPort())
	file := filepath.Join(t.TempDir(), "listen.pcapng")
	srv := startListen(t, l, port, "--isn", "2000", "--json", "-w", file, "--time-wait", "0")
	cli := runClient(t, l, binary(t), "handshake", l.ServerV4.String()+":"+port, "--isn", "100", "--send", `hello\n`, "--json", "--time-wait", "0")
	if cli.code != 0 {
		t.Fatalf("handshake: status %d\n%s%s", cli.code, cli.stdout, cli.stderr)
	}
	if code := srv.wait(t); code != 0 {
		t.Fatalf("listen: status %d\n%s%s", code, srv.stdout.String(), srv.stderr.String())
	}
	client := wireSteps(jsonEvents(t, cli.stdout))
	server := wireSteps(jsonEvents(t, srv.stdout.String()))
	wantClient := []string{
		"sent S S:100 A:0 SYN-SENT SYN-RECEIVED",
		"received S. S:2000 A:101 ESTABLISHED SYN-RECEIVED",
		"sent . S:101 A:2001 ESTABLISHED ESTABLISHED",
		"sent P. S:101 A:2001 ESTABLISHED ESTABLISHED",
	}
	wantServer := []string{
		"received S S:100 A:0 SYN-RECEIVED SYN-SENT",
		"sent S. S:2000 A:101 SYN-RECEIVED ESTABLISHED",
		"received . S:101 A:2001 ESTABLISHED ESTABLISHED",
		"received P. S:101 A:2001 ESTABLISHED ESTABLISHED",
	}
	for _, c := range []struct {
		who         string
		got, want   []string
		out, errout string
	}{{"client", client, wantClient, cli.stdout, cli.stderr}, {"server", server, wantServer, srv.stdout.String(), srv.stderr.String()}} {
		if len(c.got) < len(c.want) || strings.Join(c.got[:len(c.want)], "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s's first steps:\n%s\nwant:\n%s\n%s", c.who, strings.Join(c.got, "\n"), strings.Join(c.want, "\n"), c.out)
		}
	}
	for who, out := range map[string]string{"client": cli.stdout, "server": srv.stdout.String()} {
		seg, _ := summaryOf(t, jsonEvents(t, out))["segments"].(map[string]any)
		if fmt.Sprint(seg["handshake"], seg["data"], seg["close"], seg["total"]) != "3 2 4 9" {
			t.Errorf("%s counts segments %v, want 3 (handshake) + 2 (data) + 4 (close) = 9", who, seg)
		}
	}

	// The wire: the first four TCP segments of the capture.
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	parser := craft.NewParser()
	var wire []string
	for len(wire) < 4 {
		data, _, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("capture ends after %d segments: %v (%v)", len(wire), err, wire)
		}
		var pkt craft.Packet
		if parser.Parse(data, &pkt) != nil || pkt.Kind != craft.KindTCP {
			continue
		}
		s := pkt.Seg
		wire = append(wire, fmt.Sprintf("%s S:%d A:%d len %d", s.Flags.Tcpdump(), uint32(s.Seq), uint32(s.Ack), len(s.Payload)))
	}
	want := []string{"[S] S:100 A:0 len 0", "[S.] S:2000 A:101 len 0", "[.] S:101 A:2001 len 0", "[P.] S:101 A:2001 len 6"}
	if strings.Join(wire, "\n") != strings.Join(want, "\n") {
		t.Errorf("on the wire:\n%s\nwant:\n%s", strings.Join(wire, "\n"), strings.Join(want, "\n"))
	}
}

// dialClient is a Go net.Dial client in the client namespace: it sends
// hello, reads what comes back until EOF, a reset or 3 s, and closes.
func dialClient(t *testing.T, l lab.Lab, port string, closeFirst bool) (got string, readErr error) {
	t.Helper()
	err := lab.Do(l.ClientNS, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(l.ServerV4.String(), port), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("hello\n")); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 64)
		var b []byte
		for {
			n, err := c.Read(buf)
			b = append(b, buf[:n]...)
			if closeFirst && len(b) >= 6 {
				break // the echo is in: we close first (--close wait)
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					readErr = err
				}
				break
			}
		}
		got = string(b)
		return nil
	})
	if err != nil {
		t.Fatalf("net.Dial client: %v", err)
	}
	return got, readErr
}

// TestListenClients serves real clients with every close variant: a Go
// net.Dial client, curl and socat. Each listen must end as asked (status
// 0) with the states the variant goes through, and the client must get
// what was sent.
func TestListenClients(t *testing.T) {
	l := labtest.New(t)
	curl, socat := lookTool(t, "curl"), lookTool(t, "socat")
	// Our states, in order, that each close variant must show. A client
	// that closes at once after our FIN acknowledges it on its own FIN:
	// FIN-WAIT-1 → TIME-WAIT, without FIN-WAIT-2 (Linux does).
	active := [][]string{{"FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT", "CLOSED"}, {"FIN-WAIT-1", "TIME-WAIT", "CLOSED"}}
	states := map[string][][]string{
		"wait": {{"CLOSE-WAIT", "LAST-ACK", "CLOSED"}},
		"fin":  active,
		"half": active,
		"rst":  {{"CLOSED"}},
	}
	for _, mode := range []string{"wait", "fin", "half", "rst"} {
		t.Run("dial-"+mode, func(t *testing.T) {
			port := fmt.Sprint(listenPort())
			srv := startListen(t, l, port, "--echo", "--close", mode, "--json", "--time-wait", "0", "--timeout", "3s")
			got, rerr := dialClient(t, l, port, mode == "wait")
			if code := srv.wait(t); code != 0 {
				t.Fatalf("listen --close %s: status %d\n%s%s", mode, code, srv.stdout.String(), srv.stderr.String())
			}
			if got != "hello\n" {
				t.Errorf("the client got %q, want the echo %q", got, "hello\n")
			}
			if mode == "rst" && rerr == nil {
				t.Errorf("--close rst: the client's read ended without an error, want a reset")
			}
			checkStates(t, srv.stdout.String(), states[mode])
		})
	}
	for _, mode := range []string{"wait", "fin", "half", "rst"} {
		t.Run("curl-"+mode, func(t *testing.T) {
			if curl == "" {
				t.Skip("curl not installed")
			}
			// With a Content-Length curl closes as soon as it has the
			// body (--close wait: the client closes first); without, it
			// reads until the server's FIN (fin, half).
			httpReply := `HTTP/1.0 200 OK\r\n\r\nhi\n`
			if mode == "wait" || mode == "rst" {
				httpReply = `HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nhi\n`
			}
			port := fmt.Sprint(listenPort())
			srv := startListen(t, l, port, "--reply", httpReply, "--close", mode, "--json", "--time-wait", "0", "--timeout", "3s")
			cl := runClient(t, l, curl, "-s", "-m", "5", "http://"+l.ServerV4.String()+":"+port+"/")
			if code := srv.wait(t); code != 0 {
				t.Fatalf("listen --close %s: status %d\n%s%s", mode, code, srv.stdout.String(), srv.stderr.String())
			}
			if mode != "rst" && (cl.code != 0 || cl.stdout != "hi\n") {
				t.Errorf("curl: status %d, body %q (want 0 and %q)\n%s", cl.code, cl.stdout, "hi\n", cl.stderr)
			}
			checkStates(t, srv.stdout.String(), states[mode])
		})
	}
	for _, mode := range []string{"wait", "fin"} {
		t.Run("socat-"+mode, func(t *testing.T) {
			if socat == "" {
				t.Skip("socat not installed")
			}
			port := fmt.Sprint(listenPort())
			srv := startListen(t, l, port, "--echo", "--close", mode, "--json", "--time-wait", "0", "--timeout", "3s")
			// socat closes its side when stdin ends (wait: the client
			// closes first) and exits when the server closes (fin).
			target := "TCP:" + l.ServerV4.String() + ":" + port
			if mode == "fin" {
				target += ",shut-none" // no FIN at the end of stdin: the server closes first
			}
			got := runWithStdin(t, l, "hello\n", socat, "-t", "2", "-", target)
			if code := srv.wait(t); code != 0 {
				t.Fatalf("listen --close %s: status %d\n%s%s", mode, code, srv.stdout.String(), srv.stderr.String())
			}
			if got != "hello\n" {
				t.Errorf("socat got %q, want the echo", got)
			}
			checkStates(t, srv.stdout.String(), states[mode])
		})
	}
}

// lookTool finds a client program; under CI=true it must be there
// (scripts/test.sh installs it).
func lookTool(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil && os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (scripts/test.sh installs it)", name)
	}
	return p
}

// checkStates checks that listen's JSON steps took our end through one of
// want, in order, after ESTABLISHED, and that the summary says ok.
func checkStates(t *testing.T, out string, want [][]string) {
	t.Helper()
	evs := jsonEvents(t, out)
	var seen []string
	est := false
	for _, ev := range evs {
		st, _ := ev["local_state"].(string)
		if ev["type"] != "step" || st == "" {
			continue
		}
		if st == "ESTABLISHED" {
			est = true
			continue
		}
		if est && (len(seen) == 0 || seen[len(seen)-1] != st) {
			seen = append(seen, st)
		}
	}
	ok := false
	for _, w := range want {
		ok = ok || strings.Join(seen, " ") == strings.Join(w, " ")
	}
	if !est || !ok {
		t.Errorf("our states after ESTABLISHED: %v (established: %v), want %v\n%s", seen, est, want, out)
	}
	if sum := summaryOf(t, evs); sum["outcome"] != "ok" {
		t.Errorf("outcome %v, want ok", sum["outcome"])
	}
}

// TestListenTeaching runs the switches that break the server on purpose:
// --drop-syn 1 makes the client's kernel retransmit its SYN (after its
// initial 1 s timeout), --no-ack its data (after its RTO); both copies are
// on the wire, the first marked ignored.
func TestListenTeaching(t *testing.T) {
	l := labtest.New(t)
	for _, tc := range []struct {
		name  string
		args  []string
		flags string
		gap   [2]time.Duration // the retransmission's delay, from the kernel's timestamps
	}{
		{"drop-syn", []string{"--drop-syn", "1"}, "S", [2]time.Duration{900 * time.Millisecond, 1500 * time.Millisecond}},
		{"no-ack", []string{"--no-ack"}, "P.", [2]time.Duration{150 * time.Millisecond, 1500 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := echoOnce(t, l, tc.args...)
			var copies []map[string]any
			for _, ev := range jsonEvents(t, out) {
				if ev["type"] == "step" && ev["direction"] == "received" && ev["flags"] == tc.flags {
					copies = append(copies, ev)
				}
			}
			if len(copies) != 2 || copies[0]["ignored"] != true || copies[1]["ignored"] == true || copies[0]["seq"] != copies[1]["seq"] {
				t.Fatalf("want two copies of the client's [%s], the first ignored, the second taken:\n%s", tc.flags, out)
			}
			gap := time.Duration((copies[1]["t_ms"].(float64) - copies[0]["t_ms"].(float64)) * float64(time.Millisecond))
			if gap < tc.gap[0] || gap > tc.gap[1] {
				t.Errorf("the client retransmitted after %v, want %v to %v", gap, tc.gap[0], tc.gap[1])
			}
			t.Logf("the client's kernel retransmitted its [%s] after %v", tc.flags, gap.Round(time.Millisecond))
		})
	}
}

// TestListenSynCookie: with --syn-cookie our end stays in LISTEN through the
// SYN and our SYN-ACK (no TCB, nothing retransmitted), the SYN-ACK's seq is
// the cookie (its top 5 bits the time counter, its MSS option the cookie's
// value), and the client's ACK makes the connection, which then runs.
func TestListenSynCookie(t *testing.T) {
	l := labtest.New(t)
	start := time.Now()
	out := echoOnce(t, l, "--syn-cookie")
	var steps []map[string]any
	for _, ev := range jsonEvents(t, out) {
		if ev["type"] == "step" && ev["direction"] != "note" {
			steps = append(steps, ev)
		}
	}
	if len(steps) < 3 {
		t.Fatalf("%d steps:\n%s", len(steps), out)
	}
	want := []string{"received S LISTEN", "sent S. LISTEN", "received . ESTABLISHED"}
	for i, w := range want {
		if g := fmt.Sprint(steps[i]["direction"], " ", steps[i]["flags"], " ", steps[i]["local_state"]); g != w {
			t.Errorf("step %d: %s, want %s\n%s", i+1, g, w, out)
		}
	}
	cookie := uint32(steps[1]["seq"].(float64))
	if tc := uint32(start.Unix()/64) % 32; cookie>>27 != tc && cookie>>27 != (tc+1)%32 {
		t.Errorf("cookie %#x: top 5 bits %d, want the time counter %d", cookie, cookie>>27, tc)
	}
	if opts, _ := steps[1]["options"].(string); opts != "[mss 1460]" {
		t.Errorf("the cookie's SYN-ACK carries %s, want [mss 1460] (index 7)", opts)
	}
	if a := uint32(steps[2]["ack"].(float64)); a != cookie+1 {
		t.Errorf("the client's ACK has ack %d, want the cookie + 1 = %d", a, cookie+1)
	}
	for _, st := range steps {
		if st["retransmission"] == true {
			t.Errorf("a retransmission with SYN cookies: %v", st)
		}
	}
}

// echoOnce runs listen --echo --close fin with args for one net.Dial
// client, checks that both ended as asked, and returns listen's JSON.
func echoOnce(t *testing.T, l lab.Lab, args ...string) string {
	t.Helper()
	port := fmt.Sprint(listenPort())
	srv := startListen(t, l, append([]string{port, "--echo", "--close", "fin", "--json", "--time-wait", "0", "--timeout", "5s"}, args...)...)
	got, _ := dialClient(t, l, port, false)
	if code := srv.wait(t); code != 0 {
		t.Fatalf("listen %v: status %d\n%s%s", args, code, srv.stdout.String(), srv.stderr.String())
	}
	if got != "hello\n" {
		t.Errorf("the client got %q, want the echo", got)
	}
	return srv.stdout.String()
}

// TestListenParallel serves three net.Dial clients at once: each client
// waits 600 ms after its handshake before it sends, so one after the other
// would take at least 1.8 s; each connection has its own summary, every
// JSON event names its connection, and each lane of the text view tells a
// whole connection.
func TestListenParallel(t *testing.T) {
	l := labtest.New(t)
	for _, view := range []string{"json", "list"} {
		t.Run(view, func(t *testing.T) {
			port := fmt.Sprint(listenPort())
			args := []string{port, "--count", "3", "--echo", "--time-wait", "0", "--timeout", "3s", "--view", "list"}
			if view == "json" {
				args = append(args, "--json")
			}
			srv := startListen(t, l, args...)
			start := time.Now()
			var wg sync.WaitGroup
			got := make([]string, 3)
			for i := range got {
				wg.Add(1)
				go func() {
					defer wg.Done()
					lab.Do(l.ClientNS, func() error {
						c, err := net.DialTimeout("tcp", net.JoinHostPort(l.ServerV4.String(), port), 3*time.Second)
						if err != nil {
							got[i] = err.Error()
							return nil
						}
						defer c.Close()
						time.Sleep(600 * time.Millisecond)
						c.Write([]byte("hello\n"))
						c.SetReadDeadline(time.Now().Add(3 * time.Second))
						b := make([]byte, 6)
						n, _ := io.ReadFull(c, b)
						got[i] = string(b[:n])
						return nil
					})
				}()
			}
			wg.Wait()
			if code := srv.wait(t); code != 0 {
				t.Fatalf("listen: status %d\n%s%s", code, srv.stdout.String(), srv.stderr.String())
			}
			if took := time.Since(start); took > 1500*time.Millisecond {
				t.Errorf("three clients took %v: not served at once", took)
			}
			for i, g := range got {
				if g != "hello\n" {
					t.Errorf("client %d got %q, want the echo", i+1, g)
				}
			}
			out := srv.stdout.String()
			if view == "list" {
				for n := 1; n <= 3; n++ {
					p := fmt.Sprintf("%d│ ", n)
					if !strings.Contains(out, p+"LISTEN ") || !strings.Contains(out, p+"outcome: ok") {
						t.Errorf("lane %d lacks its header or its outcome:\n%s", n, out)
					}
				}
				return
			}
			conns := map[string]int{}
			for _, ev := range jsonEvents(t, out) {
				conn, _ := ev["conn"].(string)
				if conn == "" {
					t.Errorf("an event without its connection: %v", ev)
				}
				if ev["type"] == "summary" && ev["outcome"] == "ok" {
					conns[conn]++
				}
			}
			if len(conns) != 3 {
				t.Errorf("%d connections ended ok (%v), want 3\n%s", len(conns), conns, out)
			}
		})
	}
}

// TestShellListen drives the server's side by hand: shell --listen waits for
// a net.Dial client's SYN, `synack` answers it and waits for its ACK, an
// expect checks the client's data, `send` answers and `fin` closes first;
// the client gets the answer and the end of the stream.
func TestShellListen(t *testing.T) {
	l := labtest.New(t)
	port := fmt.Sprint(listenPort())
	script := "synack\nexpect . ack=+1\nexpect P. seq=+1 len=6\nsend hi\\n\nfin\nquit\n"
	srv := startServer(t, l, script, "shell", "--listen", port, "--isn", "2000", "--time-wait", "0", "--timeout", "3s", "--view", "list")
	got, rerr := dialClient(t, l, port, false)
	if code := srv.wait(t); code != 0 {
		t.Fatalf("shell --listen: status %d\n%s%s", code, srv.stdout.String(), srv.stderr.String())
	}
	if got != "hi\n" || rerr != nil {
		t.Errorf("the client got %q (%v), want %q and the server's FIN", got, rerr, "hi\n")
	}
	out := srv.stdout.String()
	for _, want := range []string{
		"received  [S] ", "your turn: `synack`",
		"sent      [S.] seq 2000 (rel 0)", "received  [.] seq", "us ESTABLISHED",
		"sent      [P.] seq 2001 (rel 1)", "sent      [F.] seq 2004 (rel 4)", "outcome: ok",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("shell --listen's story lacks %q:\n%s", want, out)
		}
	}
}

// TestListenObserve reads the client's kernel states from its namespace
// (--observe-netns): its socket is read, and where a reading falls in time
// it agrees with the state inferred for the client (or is ahead of it),
// never another (steps between two readings stay undecided).
func TestListenObserve(t *testing.T) {
	l := labtest.New(t)
	out := echoOnce(t, l, "--observe-netns", l.ClientNS)
	read := 0
	for _, ev := range jsonEvents(t, out) {
		if ev["type"] != "step" {
			continue
		}
		if st, _ := ev["observed_state"].(string); st != "" {
			read++
		}
		if ev["direction"] != "note" && ev["observed_agreement"] == "differs" {
			t.Errorf("the client's kernel said %v, inferred %v: %v", ev["observed_state"], ev["remote_state"], ev["explain"])
		}
	}
	if read == 0 {
		t.Errorf("the client's kernel was never read:\n%s", out)
	}
}

// TestListenStep: --step asks before each segment we send (the SYN-ACK, the
// echo, our FIN) while the connection keeps running; the Enters come on
// standard input.
func TestListenStep(t *testing.T) {
	l := labtest.New(t)
	port := fmt.Sprint(listenPort())
	srv := startServer(t, l, "\n\n\n\n\n", "listen", port, "--step", "--echo", "--close", "fin", "--time-wait", "0", "--timeout", "3s", "--view", "list")
	got, _ := dialClient(t, l, port, false)
	if code := srv.wait(t); code != 0 {
		t.Fatalf("listen --step: status %d\n%s%s", code, srv.stdout.String(), srv.stderr.String())
	}
	if got != "hello\n" {
		t.Errorf("the client got %q, want the echo", got)
	}
	asked := srv.stderr.String()
	for _, f := range []string{"will send [S.]", "will send [P.]", "will send [F.]"} {
		if !strings.Contains(asked, f) {
			t.Errorf("--step did not ask %q:\n%s", f, asked)
		}
	}
}
