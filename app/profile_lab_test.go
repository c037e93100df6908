//go:build linux

package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"tcpshake/event"
	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// profileApp is a CLI with only `rst` taking the session flags, rst's
// --wait and the profile flags, its action runProfile: the profile tested
// on its own, whether or not rst's command has it wired in yet.
func profileApp(stdout, stderr io.Writer) *cli.App {
	flags := append(sessionFlags(), &cli.StringFlag{Name: "wait", Value: "300ms"})
	cmd := &cli.Command{Name: "rst", Flags: append(flags, profileFlags()...), Action: runProfile}
	return &cli.App{Name: "tcpshake", Writer: stdout, ErrWriter: stderr, Commands: []*cli.Command{cmd},
		ExitErrHandler: func(*cli.Context, error) {}}
}

// runProfileIn runs the profile app with args from a thread inside the lab's
// client namespace (every socket it opens lives there) and returns the
// profile events by name and the exit status.
func runProfileIn(t *testing.T, l lab.Lab, args ...string) (map[string]event.Profile, int, string) {
	t.Helper()
	out, code, stderr := runProfileRaw(t, l, args...)
	return profileEvents(t, out), code, stderr
}

// runProfileRaw is runProfileIn returning what was printed.
func runProfileRaw(t *testing.T, l lab.Lab, args ...string) (string, int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	a := profileApp(&out, &errb)
	argv := append([]string{"tcpshake", "rst"}, args...)
	code := 0
	err := lab.Do(l.ClientNS, func() error {
		code = Main(a, func(args []string) error { return a.RunContext(t.Context(), args) }, argv)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), code, errb.String()
}

// profileEvents parses JSON lines and returns the profile events by name.
func profileEvents(t *testing.T, out string) map[string]event.Profile {
	t.Helper()
	evs := map[string]event.Profile{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(sc.Bytes(), &head); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, sc.Bytes())
		}
		if head.Type != "profile" {
			continue
		}
		var p event.Profile
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			t.Fatalf("profile event: %v\n%s", err, sc.Bytes())
		}
		evs[p.Name] = p
	}
	return evs
}

func figure(t *testing.T, p event.Profile, name string) (float64, bool) {
	t.Helper()
	for _, f := range p.Figures {
		if f.Name == name {
			return f.Value, true
		}
	}
	return 0, false
}

// TestProfileLab measures the lab's Linux server: its SYN-ACK is
// retransmitted after 1 s and then 2 s (tcp_synack_retries, TCP_TIMEOUT_INIT:
// the recording stops after the second retransmission), its SYN-ACK takes up
// every option offered and offers none unasked, its challenge ACKs are
// limited to one per 500 ms per socket (tcp_invalid_ratelimit), and its ISNs
// are a keyed hash per 4-tuple plus a clock of one per 64 ns (secure_tcp_seq:
// ktime_get_real_ns() >> 6, i.e. 15.625 per µs). Nothing is left open on the
// server.
func TestProfileLab(t *testing.T) {
	l := labtest.New(t)
	start := time.Now()
	target := netip.AddrPortFrom(l.ServerV4, 9).String()
	evs, code, stderr := runProfileIn(t, l, target, "--profile", "--profile-synack-retrans", "2", "--json")
	elapsed := time.Since(start)
	if code != 0 {
		t.Errorf("exit status %d, want 0; stderr: %s", code, stderr)
	}
	for _, name := range []string{"options", "isn", "challenge-ack", "synack-schedule", "summary"} {
		if _, ok := evs[name]; !ok {
			t.Fatalf("no %s profile event; got %v", name, evs)
		}
	}
	if elapsed > 20*time.Second {
		t.Errorf("the profile took %v", elapsed)
	}

	sa := evs["synack-schedule"]
	if sa.Verdict != "conforms" {
		t.Errorf("synack-schedule: %s (%s)", sa.Verdict, sa.Why)
	}
	for i, want := range []float64{1, 2} {
		name := []string{"timeout 1", "timeout 2"}[i]
		got, ok := figure(t, sa, name)
		if !ok || got < want*0.95 || got > want*1.1+0.05 {
			t.Errorf("synack-schedule %s = %v s (present %v), want about %v s", name, got, ok, want)
		}
	}

	op := evs["options"]
	if op.Verdict != "conforms" {
		t.Errorf("options: %s (%s)", op.Verdict, op.Why)
	}
	for name, want := range map[string]float64{"all offered: sackOK": 1, "all offered: timestamps": 1, "none offered: timestamps": 0, "none offered: sackOK": 0} {
		if got, ok := figure(t, op, name); !ok || got != want {
			t.Errorf("options %s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if _, ok := figure(t, op, "all offered: wscale"); !ok {
		t.Errorf("options: no window scale in the answer to a SYN offering it: %+v", op.Figures)
	}
	if _, ok := figure(t, op, "none offered: wscale"); ok {
		t.Errorf("options: window scale in the answer to a SYN without it: %+v", op.Figures)
	}

	isn := evs["isn"]
	if isn.Verdict != "conforms" || isn.Class != "keyed-hash-clock" {
		t.Errorf("isn: %s, class %q (%s)\n%s", isn.Verdict, isn.Class, isn.Why, strings.Join(isn.Explain, "\n"))
	}
	if rate, _ := figure(t, isn, "clock rate"); rate < 15.625*0.97 || rate > 15.625*1.03 {
		t.Errorf("isn clock rate %v per µs, want 15.625 (one per 64 ns)", rate)
	}
	if bits, _ := figure(t, isn, "difficulty"); bits < 24 {
		t.Errorf("isn difficulty %v bits across 4-tuples, want about 30 (random 32-bit hash)", bits)
	}

	ch := evs["challenge-ack"]
	if ch.Verdict != "permitted" {
		t.Errorf("challenge-ack: %s (%s)", ch.Verdict, ch.Why)
	}
	if n, _ := figure(t, ch, "burst answered"); n != 1 {
		t.Errorf("challenge-ack: %v challenge ACKs for the burst, want 1 (one per 500 ms per socket)", n)
	}
	if sp, ok := figure(t, ch, "min spacing"); !ok || sp < 450 || sp > 1000 {
		t.Errorf("challenge-ack: min spacing %v ms (present %v), want about 500", sp, ok)
	}
	if left := labtest.ServerConns(t, l); len(left) > 0 {
		t.Errorf("left on the server: %v", left)
	}
	t.Logf("profile of the Linux peer in %v: synack %v; isn %s; challenge %s", elapsed, sa.Figures, isn.Why, ch.Why)
}

// TestProfileLabIPv6 is the quick measurements over IPv6.
func TestProfileLabIPv6(t *testing.T) {
	l := labtest.New(t)
	target := netip.AddrPortFrom(l.ServerV6, 9).String()
	evs, code, stderr := runProfileIn(t, l, target, "--profile", "--profile-only", "options,isn", "--json")
	if code != 0 {
		t.Errorf("exit status %d, want 0; stderr: %s", code, stderr)
	}
	if op := evs["options"]; op.Verdict != "conforms" {
		t.Errorf("options: %s (%s)", op.Verdict, op.Why)
	}
	if isn := evs["isn"]; isn.Verdict != "conforms" || isn.Class != "keyed-hash-clock" {
		t.Errorf("isn: %s, class %q (%s)", isn.Verdict, isn.Class, isn.Why)
	}
	if left := labtest.ServerConns(t, l); len(left) > 0 {
		t.Errorf("left on the server: %v", left)
	}
}

// TestProfileLabText checks the text view: each measurement with its
// figures, what they mean, the rule and the verdict, and the closing line.
func TestProfileLabText(t *testing.T) {
	l := labtest.New(t)
	target := netip.AddrPortFrom(l.ServerV4, 9).String()
	out, code, stderr := runProfileRaw(t, l, target, "--profile", "--profile-only", "options,isn")
	if code != 0 {
		t.Errorf("exit status %d, want 0; stderr: %s", code, stderr)
	}
	for _, want := range []string{
		"== profile options:", "to a SYN offering nothing the SYN-ACK carried [mss ",
		"== profile isn:", "class                  keyed-hash-clock", "TCP Sequence Prediction: Difficulty=", "(Good luck!)",
		"rule:      ISN = M + F(", "verdict:   conforms", "--- profile of 198.51.100.2 (198.51.100.2 port 9) ---", "2 measurements: 2 conforms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}

// TestProfileLabLwIP measures the lab's second stack, lwIP (Debian's liblwip
// 2.1.3), and checks what its source predicts: tcp_next_iss (src/core/tcp.c)
// returns a static counter advanced by tcp_ticks, with nothing per 4-tuple,
// so its ISNs are predictable; tcp_alloc starts the RTO at 3 s (3000 /
// TCP_SLOW_INTERVAL), so its first SYN-ACK retransmission comes after about
// 3 s instead of RFC 6298's 1 s; tcp_process answers every in-window RST
// that is not exact with tcp_ack_now, with no rate limit; its SYN-ACK takes
// up MSS and window scale (LWIP_WND_SCALE) but neither SACK nor timestamps.
// The ISN verdict must differ from the Linux peer's.
func TestProfileLabLwIP(t *testing.T) {
	lw := labtest.NewPeer(t, lab.PeerLWIP)
	target := netip.AddrPortFrom(lw.ServerV4, 9).String()
	evs, code, stderr := runProfileIn(t, lw, target, "--profile", "--profile-synack-retrans", "1", "--json")
	if code != 1 {
		t.Errorf("exit status %d, want 1 (measurements deviate); stderr: %s", code, stderr)
	}
	isn := evs["isn"]
	bits, _ := figure(t, isn, "difficulty")
	switch isn.Class {
	case "constant", "constant-increment", "small-increments", "time-linear":
	default:
		t.Errorf("lwip isn class %q, want a predictable one (%s)", isn.Class, isn.Why)
	}
	if isn.Verdict != "deviates" || bits >= 16 {
		t.Errorf("lwip isn: %s, %v bits (%s)", isn.Verdict, bits, isn.Why)
	}
	sa := evs["synack-schedule"]
	if first, _ := figure(t, sa, "timeout 1"); sa.Verdict != "deviates" || sa.Level != "SHOULD" || first < 2.4 || first > 3.6 {
		t.Errorf("lwip synack-schedule: %s (%s), first timeout %v s, want deviates (SHOULD) after about 3 s: %s", sa.Verdict, sa.Level, first, sa.Why)
	}
	ch := evs["challenge-ack"]
	if n, _ := figure(t, ch, "burst answered"); ch.Verdict != "deviates" || ch.Level != "SHOULD" || n < 23 {
		t.Errorf("lwip challenge-ack: %s (%s), %v for the burst of 25, want deviates (SHOULD), no limit: %s", ch.Verdict, ch.Level, n, ch.Why)
	}
	op := evs["options"]
	for name, want := range map[string]float64{"all offered: sackOK": 0, "all offered: timestamps": 0} {
		if got, ok := figure(t, op, name); !ok || got != want {
			t.Errorf("lwip options %s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if op.Verdict != "conforms" {
		t.Errorf("lwip options: %s (%s)", op.Verdict, op.Why)
	}

	lx := labtest.New(t)
	lxEvs, _, _ := runProfileIn(t, lx, netip.AddrPortFrom(lx.ServerV4, 9).String(), "--profile", "--profile-only", "isn", "--json")
	if got := lxEvs["isn"].Class; got == isn.Class || got != "keyed-hash-clock" {
		t.Errorf("ISN class: linux %q, lwip %q: want keyed-hash-clock against a predictable one", got, isn.Class)
	}
	t.Logf("lwip: isn %s (%s); synack %s; challenge %s", isn.Class, isn.Why, sa.Why, ch.Why)
}

// TestProfileLabSynCookies measures the Linux peer with
// net.ipv4.tcp_syncookies=2: every SYN-ACK carries a cookie, so the peer
// keeps no state for the half-open connection and never retransmits its
// SYN-ACK, and within one 4-tuple its ISN moves exactly with ours
// (cookie_v4_init_sequence: a hash of the 4-tuple and the minute, plus our
// ISN). The profile must say so, not call it a clock or a broken schedule.
func TestProfileLabSynCookies(t *testing.T) {
	l := labtest.New(t, labtest.SynCookies(2))
	target := netip.AddrPortFrom(l.ServerV4, 9).String()
	evs, _, stderr := runProfileIn(t, l, target, "--profile", "--profile-only", "isn,synack-schedule", "--profile-synack-wait", "2500ms", "--json")
	if stderr != "" {
		t.Errorf("stderr: %s", stderr)
	}
	if isn := evs["isn"]; isn.Class != "follows-our-isn" || isn.Verdict != "permitted" {
		t.Errorf("isn with SYN cookies: %s %s (%s)", isn.Class, isn.Verdict, isn.Why)
	}
	if sa := evs["synack-schedule"]; sa.Verdict != "inconclusive" || !strings.Contains(sa.Why, "SYN cookies") {
		t.Errorf("synack-schedule with SYN cookies: %s (%s)", sa.Verdict, sa.Why)
	}
	if left := labtest.ServerConns(t, l); len(left) > 0 {
		t.Errorf("left on the server: %v", left)
	}
}
