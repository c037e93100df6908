//go:build linux

package app_test

import (
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// stepsOf are the step events of JSON lines.
func stepsOf(t *testing.T, out string) []map[string]any {
	t.Helper()
	var steps []map[string]any
	for _, ev := range jsonEvents(t, out) {
		if ev["type"] == "step" {
			steps = append(steps, ev)
		}
	}
	return steps
}

// TestShellDropsLab: with --drops and the server's kernel observed, a
// crafted segment 100000 bytes beyond the receive window carries the
// kernel's drop reason (its step: dropped, and "the peer's kernel dropped
// it: TCP_INVALID_SEQUENCE" in explain), and no other step claims a drop;
// every line passes the schema. Without --drops no step carries one.
func TestShellDropsLab(t *testing.T) {
	l := labtest.New(t)
	schema := scanSchema(t)
	script := "syn\nack\nsegment PA seq=+100000 data=x\nwait 200ms\nquit\n"
	for _, drops := range []bool{true, false} {
		t.Run(fmt.Sprintf("drops=%v", drops), func(t *testing.T) {
			args := []string{"--observe-netns", l.ServerNS}
			if drops {
				args = append(args, "--drops")
			}
			out, code := runShellScript(t, l, script, args...)
			if code != 0 {
				t.Fatalf("exit status %d:\n%s", code, out)
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if err := schema.ValidateLine([]byte(line)); err != nil {
					t.Errorf("a line the schema refuses: %v\n%s", err, line)
				}
			}
			var dropped []string
			for _, st := range stepsOf(t, out) {
				r, _ := st["dropped"].(string)
				if r == "" {
					continue
				}
				dropped = append(dropped, fmt.Sprintf("%v len %v: %s", st["flags"], st["len"], r))
				ex := fmt.Sprint(st["explain"])
				if !strings.Contains(ex, "the peer's kernel dropped it: "+r) {
					t.Errorf("step dropped %s without saying so: %s", r, ex)
				}
			}
			want := []string{"P. len 1: TCP_INVALID_SEQUENCE"}
			if !drops {
				want = nil
			}
			if !slices.Equal(dropped, want) {
				t.Errorf("dropped steps %q, want %q\n%s", dropped, want, out)
			}
		})
	}
}

// TestRSTDropsLab: with no firewall, every scenario's verdict with --drops
// is the one without (all conform, the challenge-ACK burst is permitted),
// the silent out-of-window-rst carries the kernel's reason
// (TCP_OLD_SEQUENCE on 6.10+, TCP_INVALID_SEQUENCE before) and closed-port
// two NO_SOCKET drops. Then a firewall in the server's namespace drops our
// RSTs to port 9 and everything to port 81. Without --drops, silence gives
// out-of-window-rst "conforms" and in-window-rst "deviates", though the
// peer's TCP never saw the RSTs; with --drops their records
// (NETFILTER_DROP) make both inconclusive, saying why, and closed-port says
// the peer's own kernel dropped its segments.
func TestRSTDropsLab(t *testing.T) {
	l := labtest.New(t)
	bin := binary(t)
	schema := scanSchema(t)
	run := func(t *testing.T, drops bool, scenarios string) map[string]map[string]any {
		args := []string{bin, "rst", fmt.Sprintf("%v:9", l.ServerV4), "--closed-port", "81", "--echo-port", "7", "--json",
			"--observe-netns", l.ServerNS, "--scenario", scenarios}
		if drops {
			args = append(args, "--drops")
		}
		r := runClient(t, l, args...)
		out := map[string]map[string]any{}
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if err := schema.ValidateLine([]byte(line)); err != nil {
				t.Errorf("a line the schema refuses: %v\n%s", err, line)
			}
		}
		for _, ev := range jsonEvents(t, r.stdout) {
			if ev["type"] == "scenario" {
				out[ev["name"].(string)] = ev
			}
		}
		return out
	}
	t.Run("open", func(t *testing.T) {
		res := run(t, true, "all")
		for n, ev := range res {
			want := "conforms"
			if n == "challenge-ack-burst" {
				want = "permitted"
			}
			if ev["verdict"] != want {
				t.Errorf("%s: %v with --drops, want %s as without: %v", n, ev["verdict"], want, ev["why"])
			}
		}
		oow := res["out-of-window-rst"]
		why := fmt.Sprint(oow["why"])
		if oow["verdict"] != "conforms" || !(strings.Contains(why, "TCP_OLD_SEQUENCE") || strings.Contains(why, "TCP_INVALID_SEQUENCE")) {
			t.Errorf("out-of-window-rst: %v: %s", oow["verdict"], why)
		}
		if d := fmt.Sprint(res["closed-port"]["drops"]); strings.Count(d, "NO_SOCKET") != 2 {
			t.Errorf("closed-port drops %s, want two NO_SOCKET", d)
		}
	})
	// On a port that echoes nothing (9), ack-of-unsent-data cannot see
	// whether the segment was dropped: inconclusive; with --drops the peer
	// kernel's record of the segment decides it (the issue: an rst scenario
	// inconclusive without --drops is decided with it).
	t.Run("no echo", func(t *testing.T) {
		for _, drops := range []bool{false, true} {
			args := []string{bin, "rst", fmt.Sprintf("%v:9", l.ServerV4), "--json", "--observe-netns", l.ServerNS, "--scenario", "ack-of-unsent-data"}
			if drops {
				args = append(args, "--drops")
			}
			r := runClient(t, l, args...)
			var got map[string]any
			for _, ev := range jsonEvents(t, r.stdout) {
				if ev["type"] == "scenario" {
					got = ev
				}
			}
			want := map[bool]string{false: "inconclusive", true: "conforms"}[drops]
			if got == nil || got["verdict"] != want || drops && !strings.Contains(fmt.Sprint(got["why"]), "TCP_ACK_UNSENT_DATA") {
				t.Errorf("--drops %v: %v, want %s (on Linux 6.18: TCP_ACK_UNSENT_DATA and an ACK back)\n%s", drops, got, want, r.stderr)
			}
		}
	})
	nft := func(args ...string) {
		t.Helper()
		cmd := exec.Command("nft", args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft %q: %v: %s", args, err, out)
		}
	}
	table := fmt.Sprintf("tdrops%d", randomPort())
	err := lab.Do(l.ServerNS, func() error {
		nft("add", "table", "inet", table)
		nft("add", "chain", "inet", table, "in", "{ type filter hook input priority -10; }")
		nft("add", "rule", "inet", table, "in", "tcp", "dport", "9", "tcp", "flags", "rst", "drop")
		nft("add", "rule", "inet", table, "in", "tcp", "dport", "81", "drop")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = lab.Do(l.ServerNS, func() error { return exec.Command("nft", "delete", "table", "inet", table).Run() })
	})
	t.Run("firewall", func(t *testing.T) {
		three := "out-of-window-rst,in-window-rst,closed-port"
		without, with := run(t, false, three), run(t, true, three)
		verdicts := func(m map[string]map[string]any) []string {
			var v []string
			for n, ev := range m {
				v = append(v, fmt.Sprintf("%s %v", n, ev["verdict"]))
			}
			sort.Strings(v)
			return v
		}
		want := []string{"closed-port inconclusive", "in-window-rst deviates", "out-of-window-rst conforms"}
		if got := verdicts(without); !slices.Equal(got, want) {
			t.Errorf("without --drops: %q, want %q (what silence alone says)", got, want)
		}
		want = []string{"closed-port inconclusive", "in-window-rst inconclusive", "out-of-window-rst inconclusive"}
		if got := verdicts(with); !slices.Equal(got, want) {
			t.Errorf("with --drops: %q, want %q", got, want)
		}
		for n, ev := range with {
			if why := fmt.Sprint(ev["why"]); !strings.Contains(why, "NETFILTER_DROP") {
				t.Errorf("%s: why does not name the firewall's drop: %s", n, why)
			}
		}
	})
}

// TestObserveKernelTimesLab: with eBPF the peer's observed changes carry the
// kernel's own times. Over five handshakes with data and a FIN close, each
// step of ours that moved the server's socket (the final ACK: ESTABLISHED;
// our FIN: CLOSE-WAIT; our last ACK: CLOSED) has observed_t_ms, when the
// server's kernel made the change, after the step's wire time (less 0.2 ms
// of clock skew between the two timestamps) and, at the median, within 50 µs
// of it. The first step says which source was used; --observe-poll says
// polling and gives no kernel times.
func TestObserveKernelTimesLab(t *testing.T) {
	l := labtest.New(t)
	bin := binary(t)
	var deltas []float64
	for range 5 {
		r := runClient(t, l, bin, "handshake", fmt.Sprintf("%v:%d", l.ServerV4, lab.PortEcho), "--send", "hi", "--json",
			"--time-wait", "0", "--observe-netns", l.ServerNS, "--observe-ebpf")
		if r.code != 0 {
			t.Fatalf("exit status %d\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		steps := stepsOf(t, r.stdout)
		if len(steps) == 0 || !strings.Contains(fmt.Sprint(steps[0]["explain"]), "through eBPF") {
			t.Fatalf("the first step does not say the kernel is read through eBPF: %v", steps)
		}
		prev := ""
		for _, st := range steps {
			remote, _ := st["remote_state"].(string)
			changed := remote != prev && prev != ""
			prev = remote
			if st["direction"] != "sent" || !changed || remote == "SYN-RECEIVED" {
				continue
			}
			obs, ok := st["observed_t_ms"].(float64)
			if !ok || st["observed_state"] != remote {
				t.Errorf("step %v (%s): observed %v at %v", st["n"], remote, st["observed_state"], st["observed_t_ms"])
				continue
			}
			d := obs - st["t_ms"].(float64)
			if d < -0.2 {
				t.Errorf("step %v (%s): the kernel changed %.3f ms before the segment was on the wire", st["n"], remote, -d)
			}
			deltas = append(deltas, d)
		}
	}
	if len(deltas) < 10 {
		t.Fatalf("%d timed changes, want 15", len(deltas))
	}
	sort.Float64s(deltas)
	med := deltas[len(deltas)/2]
	t.Logf("kernel change − wire time over %d changes: min %.3f, median %.3f, max %.3f ms", len(deltas), deltas[0], med, deltas[len(deltas)-1])
	if med > 0.05 || med < -0.05 {
		t.Errorf("median %.3f ms from the wire time, want within 0.050", med)
	}
	// Without --observe-ebpf the connection does not wait for the programs,
	// and the first step says that eBPF joins when loaded.
	r := runClient(t, l, bin, "handshake", fmt.Sprintf("%v:%d", l.ServerV4, lab.PortEcho), "--json", "--time-wait", "0",
		"--observe-netns", l.ServerNS)
	if steps := stepsOf(t, r.stdout); len(steps) == 0 || !strings.Contains(fmt.Sprint(steps[0]["explain"]), "joined by eBPF") ||
		!strings.Contains(fmt.Sprint(steps[0]["explain"]), "which the connection does not wait for") {
		t.Errorf("without --observe-ebpf: the first step does not say eBPF joins when loaded: %v", steps)
	}
	r = runClient(t, l, bin, "handshake", fmt.Sprintf("%v:%d", l.ServerV4, lab.PortEcho), "--json", "--time-wait", "0",
		"--observe-netns", l.ServerNS, "--observe-poll")
	steps := stepsOf(t, r.stdout)
	if len(steps) == 0 || !strings.Contains(fmt.Sprint(steps[0]["explain"]), "by polling sock_diag") {
		t.Errorf("--observe-poll: the first step does not say polling: %v", steps)
	}
	for _, st := range steps {
		if _, ok := st["observed_t_ms"]; ok {
			t.Errorf("--observe-poll: step %v has a kernel time", st["n"])
		}
	}
}

// TestHandshakeDropsLab: the server's firewall drops every segment with PSH
// to the echo port. With --drops the data segment and its retransmission
// each carry NETFILTER_DROP (each record names one step: they have the same
// numbers), the handshake's own segments none; the run ends unacknowledged
// (exit status 1). The RSTs that end it may carry drops of their own.
func TestHandshakeDropsLab(t *testing.T) {
	l := labtest.New(t)
	table := fmt.Sprintf("tdrops%d", randomPort())
	err := lab.Do(l.ServerNS, func() error {
		for _, args := range [][]string{
			{"add", "table", "inet", table},
			{"add", "chain", "inet", table, "in", "{ type filter hook input priority -10; }"},
			{"add", "rule", "inet", table, "in", "tcp", "dport", fmt.Sprint(lab.PortEcho), "tcp", "flags", "&", "psh", "==", "psh", "drop"},
		} {
			if out, err := exec.Command("nft", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("nft %q: %v: %s", args, err, out)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = lab.Do(l.ServerNS, func() error { return exec.Command("nft", "delete", "table", "inet", table).Run() })
	})
	r := runClient(t, l, binary(t), "handshake", fmt.Sprintf("%v:%d", l.ServerV4, lab.PortEcho), "--send", "hi", "--json",
		"--rto", "200ms", "--retries", "1", "--time-wait", "0", "--observe-netns", l.ServerNS, "--drops")
	if r.code != 1 {
		t.Errorf("exit status %d, want 1 (data never acknowledged)\n%s", r.code, r.stderr)
	}
	var dropped []string
	for _, st := range stepsOf(t, r.stdout) {
		if st["direction"] != "sent" {
			continue
		}
		dropped = append(dropped, fmt.Sprintf("%v:%v", st["flags"], st["dropped"]))
	}
	want := 0
	for _, d := range dropped {
		switch {
		case strings.HasPrefix(d, "P.:"):
			if d != "P.:NETFILTER_DROP" {
				t.Errorf("data step %s, want NETFILTER_DROP", d)
			}
			want++
		case strings.HasPrefix(d, "R."):
			// After giving up: RSTs at each candidate seq; the one after
			// the exact one finds only the listener (TCP_FLAGS).
		case !strings.HasSuffix(d, ":<nil>"):
			t.Errorf("step %s claims a drop", d)
		}
	}
	if want != 2 {
		t.Errorf("%d data steps, want 2 (the segment and its retransmission): %q", want, dropped)
	}
}

// TestObserveLWIPLab: the lwIP peer runs in user space, so its namespace's
// kernel holds none of its sockets: --observe-netns (with or without
// --drops) is refused as not observable, before any packet, rather than
// showing a peer with no socket; --drops without a peer in view is refused
// too.
func TestObserveLWIPLab(t *testing.T) {
	l := labtest.NewPeer(t, lab.PeerLWIP)
	bin := binary(t)
	target := fmt.Sprintf("%v:%d", l.ServerV4, lab.PortEcho)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--observe-netns", l.ServerNS, "--drops"}, "not observable"},
		{[]string{"--observe-netns", l.ServerNS}, "not observable"},
		{[]string{"--drops"}, "needs the peer's kernel in view"},
	} {
		r := runClient(t, l, append([]string{bin, "handshake", target}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || r.stdout != "" {
			t.Errorf("%q: exit status %d, stderr %q, stdout %q; want 2 and %q", c.args, r.code, r.stderr, r.stdout, c.want)
		}
	}
}
