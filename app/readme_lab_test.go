//go:build linux

package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tcpshake/internal/ptytest"
	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// readmeCols is the width of the terminal the README's samples were taken
// on (and that the "$ " commands run on here).
const readmeCols = 100

// A readmeCmd is one command of the README's code blocks: a "$ " line with
// the sample output under it, or a line of a block of commands (set-up,
// install, the examples of each command).
type readmeCmd struct {
	line   int // in README.md
	text   string
	sample []string // the output the README shows ("$ " commands only), up to a "…" line
}

// readmeCommands extracts the commands of README.md: every line of every
// code block without a language (or sh, shell, console), the comment at its
// end removed; in a block with "$ " lines only those are commands, the
// rest is their sample output. Output shown on its own is fenced ```text.
func readmeCommands(t *testing.T, path string) []readmeCmd {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	comment := regexp.MustCompile(`\s+#\s.*$`)
	var cmds []readmeCmd
	for i := 0; i < len(lines); i++ {
		fence, ok := strings.CutPrefix(lines[i], "```")
		if !ok {
			continue
		}
		var block []int
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			block = append(block, i)
		}
		switch fence {
		case "", "sh", "shell", "console":
		default:
			continue // json, text...: not commands
		}
		dollar := false
		for _, j := range block {
			dollar = dollar || strings.HasPrefix(lines[j], "$ ")
		}
		for _, j := range block {
			l := lines[j]
			switch {
			case dollar && strings.HasPrefix(l, "$ "):
				cmds = append(cmds, readmeCmd{line: j + 1, text: strings.TrimPrefix(l, "$ ")})
			case dollar:
				c := &cmds[len(cmds)-1]
				if l == "…" || c.sample != nil && c.sample[len(c.sample)-1] == "…" {
					c.sample = append(c.sample, "…")
					continue
				}
				c.sample = append(c.sample, l)
			case strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#"):
			default:
				cmds = append(cmds, readmeCmd{line: j + 1, text: strings.TrimSpace(comment.ReplaceAllString(l, ""))})
			}
		}
	}
	for i := range cmds {
		if j := slices.Index(cmds[i].sample, "…"); j >= 0 {
			cmds[i].sample = cmds[i].sample[:j]
		}
	}
	return cmds
}

// readmeSkip lists the README commands that cannot run in a test, with why.
var readmeSkip = map[string]string{
	"scripts/test.sh": "the whole test suite: it would run this test again, inside itself, for minutes",
}

// readmeExit lists the commands whose documented exit status is not 0.
var readmeExit = map[string]struct {
	code int
	why  string
}{
	"--flags F": {1, "a FIN probe of an open port gets no answer: open|filtered, not open (README, Exit status: 1 when no port is open)"},
}

// TestReadmeRuns runs every command of the README in a lab, as its reader
// would, and checks its exit status and the shape of its output against the
// README's sample, so the README cannot rot. What the test changes, and why:
//   - the README's lab names tcpshake-client and tcpshake-server are this
//     lab's; "sudo" is dropped (the test runs as root); every command runs in
//     the lab's client namespace (where the README's addresses are), with the
//     test's binary first on PATH, in a scratch directory;
//   - `go build -o tcpshake .` builds from the repository into the scratch
//     directory (-C), which ./tcpshake then means; `lab demo` gets --name, so
//     it never touches a lab called tcpshake;
//   - the completion and man-page lines run the tcpshake side of their pipe or
//     redirection: the other side installs into system and user directories
//     (a redirection into the scratch directory stays);
//   - a command that runs until Ctrl-C (watch without --duration or
//     --count) gets its interrupt after curl fetched the lab's page, as the
//     README says ("while curl runs"), and must have shown ESTABLISHED;
//   - the demo runs beside the other commands, in a directory of its own;
//   - the files the examples read are made first: big.bin (100 KB of random
//     bytes), capture.pcap (tcpdump on the client's link during three
//     handshakes, two to port 80, one of them from port 40000) and
//     capture.pcapng (the same, converted by editcap); --step's Enter
//     presses come on standard input;
//   - "$ " commands run on a pseudo-terminal of readmeCols columns, as their
//     samples were taken, and their output is compared by structure: the
//     first line with numbers masked, table headings, probe replies, the
//     table's ports with state and reason, the statistics lines, the
//     ladder's column heading and its steps (flags, and our and the peer's
//     inferred states); every line of a ladder must fit the terminal;
//   - the other commands are checked for their exit status and first line:
//     the command's heading (PROBE, or a scan's with its port table,
//     HANDSHAKE, SHELL, RST, analyze's table or story, the demo's title), JSON lines for
//     --json, something for completion and man; a line of several commands
//     (";", "&") only for the exit status of its last.
//
// Skipped, with why: see readmeSkip.
func TestReadmeRuns(t *testing.T) {
	l := labtest.New(t)
	bin := binary(t)
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmds := readmeCommands(t, filepath.Join(repo, "README.md"))
	if len(cmds) < 20 {
		t.Fatalf("only %d commands found in README.md: the extraction is broken", len(cmds))
	}
	work := t.TempDir()
	env := append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
	env = withoutEnv(env, "COLUMNS", "NO_COLOR")
	demoName := labtest.Name(t)
	t.Cleanup(func() {
		// A demo that failed half-way may leave its lab: take it down.
		_ = exec.Command(bin, "lab", "down", "--name", demoName).Run()
	})
	madeCaptures := false
	start := time.Now()
	// The demo builds its own lab and takes the longest: it runs beside the
	// other commands, in a directory of its own (its ./tcpshake is in use
	// while the install line builds the other).
	var demo readmeCmd
	demoDone := make(chan runResult, 1)
	for _, c := range cmds {
		if strings.Contains(c.text, "lab demo") {
			demo = c
		}
	}
	if demo.text != "" {
		dir := filepath.Join(work, "demo")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		run, _ := readmePlan(demo.text, l, repo, dir, demoName)
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			r, err := execReadme(l, run, dir, env, "", nil, nil)
			if err != nil {
				r.code, r.stderr = -1, err.Error()
			}
			demoDone <- r
		}()
		t.Cleanup(func() { <-ended }) // before the lab it built is swept
	}
	for _, c := range cmds {
		name := fmt.Sprintf("line%d", c.line)
		t.Run(name, func(t *testing.T) {
			for k, why := range readmeSkip {
				if strings.Contains(c.text, k) {
					t.Skipf("%s: %s", c.text, why)
				}
			}
			run, stdin := readmePlan(c.text, l, repo, work, demoName)
			if strings.Contains(run, "capture.pcap") && !madeCaptures {
				madeCaptures = true // once: a failure is not repeated
				makeCaptures(t, l, bin, work)
			}
			if strings.Contains(run, "big.bin") {
				big := make([]byte, 100_000)
				rand.Read(big)
				if err := os.WriteFile(filepath.Join(work, "big.bin"), big, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := 0
			for k, e := range readmeExit {
				if strings.Contains(c.text, k) {
					want = e.code
				}
			}
			var meanwhile func()
			if strings.Contains(run, "tcpshake watch") {
				// "while curl runs": curl fetches the lab's page, then
				// Ctrl-C (unless the watch is bounded by --duration or
				// --count); the watch must have seen the connection.
				meanwhile = func() {
					if r := runClient(t, l, "curl", "-s", "-o", "/dev/null", fmt.Sprintf("http://%v/", l.ServerV4)); r.code != 0 {
						t.Errorf("curl: exit %d: %s", r.code, r.stderr)
					}
				}
			}
			var r runResult
			if c.text == demo.text {
				r = <-demoDone // started first, in its own directory: it runs meanwhile
			} else {
				r = runReadme(t, l, run, work, env, stdin, c.sample != nil, meanwhile)
			}
			t.Logf("README line %d: %s\n  ran: %s\n  exit %d in %v", c.line, c.text, run, r.code, r.elapsed.Round(time.Millisecond))
			if r.code != want {
				hint := ""
				if r.code == 127 {
					hint = "\n(not a command? A block of output without \"$ \" commands is fenced ```text, which this test leaves alone)"
				}
				t.Fatalf("README line %d: %s\nexit %d, want %d%s\nstdout:\n%s\nstderr:\n%s", c.line, c.text, r.code, want, hint, r.stdout, r.stderr)
			}
			out := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
			if meanwhile != nil && !strings.Contains(r.stdout, "ESTABLISHED") {
				t.Errorf("README line %d: %s: while curl ran it showed no ESTABLISHED:\n%s\n%s", c.line, c.text, r.stdout, r.stderr)
			}
			if c.sample != nil {
				compareSample(t, c, out)
				return
			}
			checkFirstLine(t, c, run, out)
		})
	}
	t.Logf("%d README commands in %v", len(cmds), time.Since(start).Round(time.Millisecond))
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// readmePlan is the shell command that runs README command text here, and
// its standard input.
func readmePlan(text string, l lab.Lab, repo, work, demoName string) (run, stdin string) {
	run = strings.ReplaceAll(text, "sudo ", "")
	run = strings.ReplaceAll(run, "tcpshake-client", l.ClientNS)
	run = strings.ReplaceAll(run, "tcpshake-server", l.ServerNS)
	run = strings.ReplaceAll(run, "go build -o tcpshake .", "go build -C "+repo+" -o "+filepath.Join(work, "tcpshake")+" .")
	if strings.Contains(run, "lab demo") {
		run += " --name " + demoName
	}
	// An install line: its output goes into a system or user directory.
	for _, sep := range []string{" | tee ", " > "} {
		i := strings.Index(run, sep)
		if i < 0 || !strings.HasPrefix(run, "tcpshake ") {
			continue
		}
		if to := strings.Fields(run[i+len(sep):]); len(to) > 0 && strings.ContainsAny(to[0][:1], `/~"$`) {
			run = run[:i]
		}
	}
	if strings.Contains(run, "--step") {
		stdin = strings.Repeat("\n", 20)
	}
	return run, stdin
}

// runReadme runs the shell command run in the lab's client namespace, on a
// pseudo-terminal of readmeCols columns when tty is set; see execReadme.
func runReadme(t *testing.T, l lab.Lab, run, dir string, env []string, stdin string, tty bool, meanwhile func()) runResult {
	t.Helper()
	var term *os.File
	var done <-chan []byte
	if tty {
		var m *os.File
		m, term = ptytest.Open(t, readmeCols)
		done = ptytest.ReadAll(m)
	}
	r, err := execReadme(l, run, dir, env, stdin, term, meanwhile)
	if err != nil {
		t.Fatal(err)
	}
	if done != nil {
		r.stdout = ansi.ReplaceAllString(string(<-done), "")
	}
	return r
}

// execReadme runs run with bash in the lab's client namespace, its stdout on
// term when given (the caller reads it). A command that runs until Ctrl-C
// gets meanwhile: once it says "Ctrl-C to stop" on stderr, meanwhile runs,
// and then the command gets SIGINT, as from the terminal.
func execReadme(l lab.Lab, run, dir string, env []string, stdin string, term *os.File, meanwhile func()) (runResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", run)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdin = strings.NewReader(stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	errb := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = &out, errb
	if term != nil {
		cmd.Stdout = term
	}
	begin := time.Now()
	err := lab.Do(l.ClientNS, cmd.Start)
	if term != nil {
		term.Close() // the command holds its own copy
	}
	if err != nil {
		return runResult{}, fmt.Errorf("start %q: %w", run, err)
	}
	if meanwhile != nil {
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(errb.String(), "Ctrl-C to stop") && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		meanwhile()
		if untilCtrlC(run) {
			time.Sleep(200 * time.Millisecond)
			syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		}
	}
	err = cmd.Wait()
	r := runResult{elapsed: time.Since(begin), stderr: errb.String(), stdout: out.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		r.code = ee.ExitCode()
	case err != nil:
		return r, fmt.Errorf("run %q: %v (stderr %s)", run, err, r.stderr)
	}
	return r, nil
}

// syncBuffer is a bytes.Buffer read while the command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// untilCtrlC: the command runs until it is interrupted (watch without
// --duration or --count).
func untilCtrlC(run string) bool {
	return strings.Contains(run, "tcpshake watch") && !strings.Contains(run, "--duration") && !strings.Contains(run, "--count")
}

var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// makeCaptures writes the capture files the analyze examples read:
// tcpdump on the client's link while three handshakes run.
func makeCaptures(t *testing.T, l lab.Lab, bin, work string) {
	t.Helper()
	pcap := filepath.Join(work, "capture.pcap")
	// -Z root: tcpdump would write the file as user tcpdump, which the
	// test's directory does not let in. --immediate-mode: else packets
	// wait up to a second in the ring, and SIGINT ends tcpdump before it
	// writes them.
	dump := exec.Command("tcpdump", "-i", "veth0", "--immediate-mode", "-U", "-n", "-Z", "root", "-w", pcap, "tcp")
	var derr syncBuffer // read below while tcpdump writes it
	dump.Stderr = &derr
	if err := lab.Do(l.ClientNS, dump.Start); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			dump.Process.Signal(syscall.SIGINT)
			dump.Wait()
		}
	}
	defer stop()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(derr.String(), "listening on"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump did not start: %s", derr.String())
		}
	}
	http := fmt.Sprintf("%v:%d", l.ServerV4, lab.PortHTTP)
	for _, args := range [][]string{
		{"handshake", fmt.Sprintf("%v:%d", l.ServerV4, lab.PortEcho), "--send", "hi", "--time-wait", "0"},
		{"handshake", http, "--sport", "40000", "--send", `GET / HTTP/1.0\r\n\r\n`, "--close", "wait", "--time-wait", "0"},
		{"handshake", http, "--send", `GET / HTTP/1.0\r\n\r\n`, "--close", "wait", "--time-wait", "0"},
	} {
		if r := runClient(t, l, append([]string{bin}, args...)...); r.code != 0 {
			t.Fatalf("making the capture: %q: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	time.Sleep(50 * time.Millisecond) // the last segments' way through tcpdump's buffer
	stop()
	if fi, err := os.Stat(pcap); err != nil || fi.Size() < 1000 {
		t.Fatalf("tcpdump wrote no capture (%v, %v): %s", err, fi.Size(), derr.String())
	}
	if out, err := exec.Command("editcap", "-F", "pcapng", pcap, filepath.Join(work, "capture.pcapng")).CombinedOutput(); err != nil {
		t.Fatalf("editcap: %v\n%s", err, out)
	}
}

// checkFirstLine: a command without a sample starts its output as its kind
// of command does.
func checkFirstLine(t *testing.T, c readmeCmd, run string, out []string) {
	t.Helper()
	first := out[0]
	fail := func(want string) {
		t.Helper()
		t.Errorf("README line %d: %s\nfirst line %q, want %s", c.line, c.text, first, want)
	}
	sub := ""
	if i := strings.LastIndex(run, "tcpshake "); i >= 0 {
		if f := strings.Fields(run[i:]); len(f) > 1 {
			sub = f[1]
		}
	}
	switch {
	case !strings.Contains(run, "tcpshake "), strings.HasPrefix(run, "go build") && !strings.Contains(run, "lab demo"):
		// go build, setcap: the exit status says it all
	case regexp.MustCompile(`;|&( |$)`).MatchString(run):
		// Several commands, some in the background: whose line comes
		// first is not the README's to say; the exit status is the last's.
	case strings.Contains(run, "--json"):
		sc := bufio.NewScanner(strings.NewReader(strings.Join(out, "\n")))
		sc.Buffer(nil, 4<<20)
		n := 0
		for sc.Scan() {
			var ev map[string]any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev["type"] == nil {
				t.Errorf("README line %d: %s\nnot a JSON event: %s", c.line, c.text, sc.Bytes())
			}
			n++
		}
		if n == 0 {
			t.Errorf("README line %d: %s: no JSON lines", c.line, c.text)
		}
	case strings.Contains(run, "lab demo"):
		if first != "== tcpshake lab demo ==" {
			fail(`"== tcpshake lab demo =="`)
		}
	case sub == "probe" && strings.HasPrefix(first, "SYN scan of "):
		// Many ports: the scan engine's heading (docs/scan.md), then the
		// table.
		if !slices.ContainsFunc(out, func(l string) bool { return strings.HasPrefix(l, "PORT ") }) {
			t.Errorf("README line %d: %s: a scan without its port table", c.line, c.text)
		}
	case sub == "probe", sub == "handshake", sub == "shell", sub == "rst":
		// "PROBE 198.51.100.2 (…", "RST CLOSED-PORT 198.51.100.2 (…"
		head := regexp.MustCompile(`^` + strings.ToUpper(sub) + `( [A-Z-]+)? \S+ \(`)
		if sub != "rst" {
			head = regexp.MustCompile(`^` + strings.ToUpper(sub) + ` \S+ \(`)
		}
		if !head.MatchString(first) {
			fail(fmt.Sprintf("%q and the target", strings.ToUpper(sub)+" "))
		}
	case sub == "analyze" && strings.Contains(run, "--conn"):
		if !regexp.MustCompile(`^1 +[0-9.]+ ms +\[S\] seq`).MatchString(first) {
			fail("the story's first step, the client's SYN")
		}
	case sub == "analyze":
		if strings.Join(strings.Fields(first), " ") != "# CLIENT SERVER C>S PKT/BYTES S>C PKT/BYTES START DURATION OPENED CLOSED RETRANS OOO" {
			fail("the conversation table's heading")
		}
	case sub == "watch":
		// As the README's sample: "0.000097  A:P → B:P  SYN-SENT → ESTABLISHED".
		if !regexp.MustCompile(`^[0-9]+\.[0-9]{6} +(\S+ +)?\S+ → \S+ +[A-Z-]+ → [A-Z-]+`).MatchString(first) {
			fail("a state change: time, the connection, from → to")
		}
	case sub == "completion", sub == "man":
		if strings.TrimSpace(first) == "" {
			fail("the script or page")
		}
	default:
		t.Errorf("README line %d: %s: no rule for the shape of this command's output; add one to checkFirstLine", c.line, c.text)
	}
}

// compareSample compares a command's output with the README's sample by
// structure (see sampleDiff).
func compareSample(t *testing.T, c readmeCmd, out []string) {
	t.Helper()
	for _, d := range sampleDiff(c.sample, out) {
		t.Errorf("README line %d: %s\n%s", c.line, c.text, d)
	}
}

// sampleDiff says how output differs from a README sample in structure
// (see sampleKeys): the first line must match with numbers masked, the
// sample's structural lines must come in the output in the same order, and a
// ladder's lines must fit the terminal.
func sampleDiff(sample, out []string) []string {
	var diffs []string
	if mask(out[0]) != mask(sample[0]) {
		diffs = append(diffs, fmt.Sprintf("first line\n got %q\nwant %q (numbers masked)", out[0], sample[0]))
	}
	want, got := sampleKeys(sample), sampleKeys(out)
	if len(want) < 3 {
		return append(diffs, fmt.Sprintf("only %d structural lines in the sample %q", len(want), sample))
	}
	i := 0
	for _, k := range got {
		if i < len(want) && k == want[i] {
			i++
		}
	}
	if i < len(want) {
		diffs = append(diffs, fmt.Sprintf("the output lacks %q (after the sample's %q)\nsample's structure: %q\noutput's structure: %q\noutput:\n%s",
			want[i], want[:i], want, got, strings.Join(out, "\n")))
	}
	// The ladder and list views fit the terminal (probe's lines are
	// hping3's: one line per answer, whatever its length).
	ladder := slices.ContainsFunc(got, func(k string) bool { return strings.HasPrefix(k, "arrow ") })
	for n, l := range out {
		if w := len([]rune(l)); ladder && w > readmeCols {
			diffs = append(diffs, fmt.Sprintf("output line %d is %d columns on a %d-column terminal: %q", n+1, w, readmeCols, l))
		}
	}
	return diffs
}

var (
	digits   = regexp.MustCompile(`[0-9]+`)
	flagsTok = regexp.MustCompile(`^\[[A-Z.]*\]$`)
	portRow  = regexp.MustCompile(`^[0-9]+/tcp$`)
	arrowRun = regexp.MustCompile(`[─┄◀▶]+`)
)

// mask is a line with every number replaced by N and runs of spaces by one.
func mask(s string) string { return strings.Join(strings.Fields(digits.ReplaceAllString(s, "N")), " ") }

// sampleKeys is the structure of output lines: table headings, probe
// answers (flags and who answered, ICMP errors; in any order), port rows (port, state,
// reason), statistics lines (masked), the ladder's heading (masked), its
// segments' flags, and its arrows' inferred states. Explanations, times and
// the kernel's readings (which vary from run to run) are not structure.
func sampleKeys(lines []string) []string {
	var keys []string
	for _, l := range lines {
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
		case len(f) >= 4 && strings.ToUpper(l) == l && !strings.ContainsAny(l, "0123456789[─"):
			keys = append(keys, "heading "+strings.Join(f, " "))
		case strings.HasPrefix(l, "#") && len(f) >= 4:
			keys = append(keys, "columns "+mask(l))
		case flagsTok.MatchString(f[0]) && len(f) > 1:
			keys = append(keys, "answer "+f[0]+" "+f[1])
		case f[0] == "ICMP" && len(f) > 3:
			keys = append(keys, "answer "+strings.Join(f[:4], " "))
		case portRow.MatchString(f[0]) && len(f) >= 3:
			keys = append(keys, "port "+strings.Join(f[:3], " "))
		case strings.HasPrefix(l, "---"), strings.HasPrefix(l, "rtt "), strings.Contains(l, " probes sent, "):
			keys = append(keys, "stats "+mask(l))
		case arrowRun.MatchString(l) && !strings.HasPrefix(strings.TrimSpace(l), "kernel"):
			// "N  t  LOCAL  ───▶  REMOTE  kernel: …": the states around the arrow.
			parts := arrowRun.Split(l, 2)
			left, right := strings.Fields(parts[0]), strings.Fields(parts[1])
			if len(left) > 0 && len(right) > 0 {
				keys = append(keys, "arrow "+left[len(left)-1]+" "+arrowDir(l)+" "+right[0])
			}
		case len(f) >= 4 && flagsTok.MatchString(f[3]) && digits.MatchString(f[0]):
			keys = append(keys, "segment "+f[0]+" "+f[3]) // ladder: "1  0.863 ms  [S] seq …"
		}
	}
	// A probe's answers are printed as they arrive: their order is the
	// network's, not the README's.
	for i := 0; i < len(keys); {
		j := i
		for j < len(keys) && strings.HasPrefix(keys[j], "answer ") {
			j++
		}
		slices.Sort(keys[i:j])
		i = max(j, i+1)
	}
	return keys
}

func arrowDir(l string) string {
	switch {
	case strings.Contains(l, "▶"):
		return "→"
	case strings.Contains(l, "◀"):
		return "←"
	}
	return "┄"
}
