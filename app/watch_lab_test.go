//go:build linux

package app_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// watcher is a running `tcpshake watch`.
type watcher struct {
	cmd  *exec.Cmd
	out  strings.Builder // written by exec until Wait returns
	err  syncBuffer      // read while the watch runs
	done chan error      // once the process ended and all its stderr was read
}

// startWatch runs the binary's watch with args and waits for its first line
// on stderr (the programs are attached, or the poll's baseline is taken).
func startWatch(t *testing.T, args ...string) *watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	w := &watcher{cmd: exec.CommandContext(ctx, binary(t), append([]string{"watch"}, args...)...), done: make(chan error, 1)}
	w.cmd.Stdout = &w.out
	pr, pw := io.Pipe()
	w.cmd.Stderr = pw
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		n := 0
		for sc.Scan() {
			if n == 0 {
				first <- sc.Text()
			}
			n++
			w.err.Write([]byte(sc.Text() + "\n"))
		}
	}()
	go func() {
		err := w.cmd.Wait()
		pw.Close()
		<-scanned // the last lines (the summary) are in w.err before done
		w.done <- err
	}()
	select {
	case l := <-first:
		t.Logf("watch: %s", l)
	case err := <-w.done:
		t.Fatalf("watch ended before its first line: %v\nstderr: %s", err, w.err.String())
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not start in 10 s")
	}
	return w
}

// wait waits for the watch to end by itself (--duration or --count).
func (w *watcher) wait(t *testing.T) {
	t.Helper()
	if err := <-w.done; err != nil {
		t.Fatalf("watch: %v\nstdout:\n%s\nstderr:\n%s", err, w.out.String(), w.err.String())
	}
	time.Sleep(10 * time.Millisecond) // the stderr reader's last line
}

// curl runs curl in the client namespace and returns its local port.
func curl(t *testing.T, l lab.Lab, url string) string {
	t.Helper()
	var out strings.Builder
	cmd := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{local_port}", url)
	cmd.Stdout = &out
	if err := lab.Do(l.ClientNS, cmd.Run); err != nil {
		t.Fatalf("curl %s: %v", url, err)
	}
	return out.String()
}

// transitions picks the watch's JSON changes of one socket (local end
// local) as "FROM → TO".
func transitions(t *testing.T, stdout, local string) []string {
	t.Helper()
	var got []string
	last := ""
	for _, ev := range jsonEvents(t, stdout) {
		if ev["type"] != "change" || ev["local"] != local {
			continue
		}
		if ts := ev["time"].(string); ts < last {
			t.Errorf("times run backwards: %s after %s", ts, last)
		} else {
			last = ts
		}
		got = append(got, fmt.Sprintf("%s → %s", ev["from"], ev["to"]))
	}
	return got
}

// TestLabWatchCurl is the seeds' exercise: `tcpshake watch --netns CLIENT
// --port 80` while curl runs shows every change of curl's socket, and of the
// server's with --netns SERVER, while `ss -tan` every 0.1 s (the netstat
// exercise) sees at most one of the short-lived states.
func TestLabWatchCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is not installed; scripts/test.sh installs it")
	}
	l := labtest.New(t)
	cw := startWatch(t, "--netns", l.ClientNS, "--port", "80", "--json", "--duration", "1500ms")
	sw := startWatch(t, "--netns", l.ServerNS, "--port", "80", "--json", "--duration", "1500ms")
	// The netstat exercise, beside it.
	ssSeen := make(chan []string, 1)
	stop := make(chan struct{})
	go func() {
		var seen []string
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				ssSeen <- seen
				return
			case <-tick.C:
			}
			out, _ := exec.Command("ip", "netns", "exec", l.ServerNS, "ss", "-tanH", "sport", "= :80").Output()
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if f := strings.Fields(line); len(f) > 0 && f[0] != "LISTEN" {
					seen = append(seen, f[0])
				}
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	port := curl(t, l, "http://"+l.ServerV4.String()+"/")
	cw.wait(t)
	sw.wait(t)
	close(stop)
	ss := <-ssSeen
	validateWatchJSON(t, cw.out.String())
	validateWatchJSON(t, sw.out.String())
	client := l.ClientV4.String() + ":" + port
	got := transitions(t, cw.out.String(), client)
	var srv []string
	for _, ev := range jsonEvents(t, sw.out.String()) {
		if ev["type"] == "change" && ev["remote"] == client {
			srv = append(srv, fmt.Sprintf("%s → %s", ev["from"], ev["to"]))
		}
	}
	// The server answers one HTTP/1.0 request and closes; curl closes as
	// soon as it has the Content-Length's bytes, so either end may close
	// first (both at once is the simultaneous close).
	open := []string{"CLOSED → SYN-SENT", "SYN-SENT → ESTABLISHED"}
	srvOpen := []string{"LISTEN → SYN-RECEIVED", "SYN-RECEIVED → ESTABLISHED"}
	active := []string{"ESTABLISHED → FIN-WAIT-1", "FIN-WAIT-1 → FIN-WAIT-2", "FIN-WAIT-2 → TIME-WAIT"}
	passive := []string{"ESTABLISHED → CLOSE-WAIT", "CLOSE-WAIT → LAST-ACK", "LAST-ACK → CLOSED"}
	both := []string{"ESTABLISHED → FIN-WAIT-1", "FIN-WAIT-1 → CLOSING", "CLOSING → TIME-WAIT"}
	variants := []struct{ name, client, server string }{
		{"the server closes first", strings.Join(append(open, passive...), ", "), strings.Join(append(srvOpen, active...), ", ")},
		{"curl closes first", strings.Join(append(open, active...), ", "), strings.Join(append(srvOpen, passive...), ", ")},
		{"both close at once", strings.Join(append(open, both...), ", "), strings.Join(append(srvOpen, both...), ", ")},
	}
	matched := ""
	for _, v := range variants {
		if strings.Join(got, ", ") == v.client && strings.Join(srv, ", ") == v.server {
			matched = v.name
		}
	}
	if matched == "" {
		t.Errorf("client %s: %q\nserver: %q\nmatch no close variant\nclient stdout:\n%s\nserver stdout:\n%s", client, got, srv, cw.out.String(), sw.out.String())
	}
	t.Logf("%s: client %q, server %q", matched, got, srv)
	distinct := map[string]bool{}
	for _, s := range ss {
		distinct[s] = true
	}
	t.Logf("ss -tan every 0.1 s saw %v; watch saw %d changes on the server", ss, len(srv))
	if len(distinct) >= len(srv) {
		t.Errorf("ss every 0.1 s saw %d states (%v): the connection lived long enough to be seen whole", len(distinct), ss)
	}
	if !strings.Contains(cw.err.String(), "state changes") {
		t.Errorf("no summary on stderr: %q", cw.err.String())
	}
}

// TestLabWatchPoll is the fallback forced with --poll: it says what it
// misses, and sees a state that lasts (the hold service keeps CLOSE-WAIT).
func TestLabWatchPoll(t *testing.T) {
	l := labtest.New(t, labtest.HoldAfterEOF(500*time.Millisecond))
	w := startWatch(t, "--poll", "--netns", l.ServerNS, "--port", "9", "--duration", "1200ms")
	if !strings.Contains(w.err.String(), "a state that lasts less than that between two polls is missed") {
		t.Errorf("the fallback does not say what it misses: %q", w.err.String())
	}
	cmd := exec.Command("socat", "-u", "-", "TCP:"+l.ServerV4.String()+":9")
	cmd.Stdin = strings.NewReader("x")
	if err := lab.Do(l.ClientNS, cmd.Run); err != nil {
		t.Fatalf("socat: %v", err)
	}
	w.wait(t)
	out := w.out.String()
	if !strings.Contains(out, "→ CLOSE-WAIT  (seen by a poll)") {
		t.Errorf("no CLOSE-WAIT seen by a poll:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "→ CLOSED  (seen by a poll)") {
		t.Errorf("the server's socket was not seen gone:\n%s", out)
	}
}

// TestWatchUnprivileged: a user without CAP_BPF and CAP_PERFMON gets the
// sock_diag fallback in its own namespace, told why and what it misses.
func TestWatchUnprivileged(t *testing.T) {
	labtest.RequireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is not installed; scripts/test.sh installs it")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--ambient-caps=-all", binary(t), "watch", "--duration", "300ms")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("watch as nobody: %v\nstderr: %s", err, errb.String())
	}
	for _, want := range []string{"eBPF needs CAP_BPF and CAP_PERFMON (", "polling the socket table with sock_diag every 10ms in this network namespace", "is missed"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errb.String())
		}
	}
}

// TestLabWatchDrops: a segment to a port where nothing listens, and one far
// beyond the receive window of an established connection, are dropped by
// the server's kernel for the reasons it names.
func TestLabWatchDrops(t *testing.T) {
	l := labtest.New(t)
	w := startWatch(t, "--drops", "--netns", l.ServerNS, "--json", "--duration", "2s")
	if r := runClient(t, l, binary(t), "probe", l.ServerV4.String(), "-p", "81", "-q"); r.code != 1 {
		t.Fatalf("probe of the closed port: exit %d\n%s", r.code, r.stderr)
	}
	sh := exec.Command(binary(t), "shell", l.ServerV4.String()+":7", "--json")
	sh.Stdin = strings.NewReader("syn\nack\nsegment PA seq=+100000 data=x\nwait 100ms\nquit\n")
	if err := lab.Do(l.ClientNS, sh.Run); err != nil {
		t.Fatalf("shell: %v", err)
	}
	w.wait(t)
	validateWatchJSON(t, w.out.String())
	reasons := map[string]string{}
	for _, ev := range jsonEvents(t, w.out.String()) {
		if ev["type"] == "drop" {
			reasons[ev["dst"].(string)+" "+ev["flags"].(string)] = ev["reason"].(string)
		}
	}
	srv := l.ServerV4.String()
	for k, want := range map[string]string{srv + ":81 S": "NO_SOCKET", srv + ":7 P.": "TCP_INVALID_SEQUENCE"} {
		if reasons[k] != want {
			t.Errorf("drop of %s: reason %q, want %q (all: %v)", k, reasons[k], want, reasons)
		}
	}
}

// validateWatchJSON fails t for a line of watch --json that
// docs/json-schema.json refuses.
func validateWatchJSON(t *testing.T, out string) {
	t.Helper()
	schema := scanSchema(t)
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		n++
		if err := schema.ValidateLine([]byte(line)); err != nil {
			t.Errorf("a line the schema refuses: %v\n%s", err, line)
		}
	}
	if n == 0 {
		t.Errorf("no JSON lines to check")
	}
}
