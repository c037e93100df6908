//go:build linux

package app_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"tcpshake/internal/jsonschema"
	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// portTruth is what a port of the lab server must be found: state and
// reason.
type portTruth struct{ state, reason string }

// serverTruth reads what the server namespace says about every port of
// addr: open where ss -ltn shows a listener on it (or on the wildcard of
// its family), what the lab's nftables input chain does with the port's
// SYNs (drop: filtered no-response; reject: the ICMP it sends), and closed
// (the kernel's RST) everywhere else.
func serverTruth(t *testing.T, l lab.Lab, addr netip.Addr) map[uint16]portTruth {
	t.Helper()
	truth := map[uint16]portTruth{}
	out, err := exec.Command("ip", "netns", "exec", l.ServerNS, "nft", "list", "chain", "inet", "tcpshake_lab", "input").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list chain: %v\n%s", err, out)
	}
	rule := regexp.MustCompile(`tcp dport (\d+) .*?(drop|reject(?: with icmpx ([a-z-]+))?)$`)
	for _, line := range strings.Split(string(out), "\n") {
		m := rule.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		p, _ := strconv.Atoi(m[1])
		switch {
		case m[2] == "drop":
			truth[uint16(p)] = portTruth{"filtered", "no-response"}
		case m[3] == "" || m[3] == "port-unreachable":
			truth[uint16(p)] = portTruth{"filtered", "port-unreach"}
		case m[3] == "admin-prohibited":
			truth[uint16(p)] = portTruth{"filtered", "admin-prohibited"}
		default:
			t.Fatalf("a lab rule this test does not know: %s", line)
		}
	}
	if len(truth) == 0 {
		t.Fatalf("no dport rule in the lab's input chain:\n%s", out)
	}
	out, err = exec.Command("ip", "netns", "exec", l.ServerNS, "ss", "-ltnH").CombinedOutput()
	if err != nil {
		t.Fatalf("ss -ltn: %v\n%s", err, out)
	}
	wild := netip.IPv4Unspecified()
	if addr.Is6() {
		wild = netip.IPv6Unspecified()
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		local := strings.ReplaceAll(f[3], "*", "0.0.0.0")
		ap, err := netip.ParseAddrPort(local)
		if err != nil {
			t.Fatalf("ss line %q: %v", line, err)
		}
		if a := ap.Addr().Unmap(); a == addr || a == wild {
			if _, firewalled := truth[ap.Port()]; !firewalled {
				truth[ap.Port()] = portTruth{"open", "syn-ack"}
			}
		}
	}
	return truth
}

// scanResults runs a scan with --json -v and returns every port's result
// by address, failing on a negative RTT, a summary whose ledger does not add
// up, or a port reported twice.
func scanResults(t *testing.T, l lab.Lab, args ...string) (map[netip.AddrPort]portTruth, map[string]any) {
	t.Helper()
	r := runClient(t, l, append([]string{binary(t), "probe", "--json", "-v"}, args...)...)
	if r.code != 0 && r.code != 1 {
		t.Fatalf("probe %v: exit %d\n%s", args, r.code, r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("stderr is not a terminal, so no progress bar and nothing else: %q", r.stderr)
	}
	got := map[netip.AddrPort]portTruth{}
	var summary map[string]any
	schema := scanSchema(t)
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for line := 0; sc.Scan(); line++ {
		// The schema check is slow: every line that is not a closed port's
		// result, and the first 200.
		if line < 200 || !bytes.Contains(sc.Bytes(), []byte(`"state":"closed"`)) {
			if err := schema.ValidateLine(sc.Bytes()); err != nil {
				t.Fatalf("a line the schema refuses: %v\n%s", err, sc.Bytes())
			}
		}
		var ev struct {
			Type, Addr, State, Reason string
			Port                      uint16
			RTT                       json.RawMessage `json:"rtt_ms"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("bad JSON line %s: %v", sc.Bytes(), err)
		}
		switch ev.Type {
		case "result":
			ap := netip.AddrPortFrom(netip.MustParseAddr(ev.Addr), ev.Port)
			if _, dup := got[ap]; dup {
				t.Errorf("%v reported twice", ap)
			}
			got[ap] = portTruth{ev.State, ev.Reason}
			if rtt, err := strconv.ParseFloat(string(ev.RTT), 64); err == nil && rtt < 0 {
				t.Errorf("%v: negative RTT %v ms", ap, rtt)
			}
		case "summary":
			json.Unmarshal(sc.Bytes(), &summary)
		}
	}
	if summary == nil {
		t.Fatalf("no summary:\n%s", r.stderr)
	}
	led, _ := summary["scan"].(map[string]any)
	n := func(k string) int { v, _ := led[k].(float64); return int(v) }
	if sum := n("answered") + n("answered_after_retry") + n("silent") + n("kernel_dropped") + n("never_left") + n("our_firewall") + n("interrupted"); sum != n("probes") || len(got) != n("probes") {
		t.Errorf("ledger %v adds up to %d, %d results, want %d probes", led, sum, len(got), n("probes"))
	}
	if rtt, ok := summary["rtt_ms"].(map[string]any); ok && rtt["min"].(float64) < 0 {
		t.Errorf("negative minimum RTT: %v", rtt)
	}
	return got, summary
}

// scanSchema is docs/json-schema.json.
func scanSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	b, err := os.ReadFile("../docs/json-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	s, err := jsonschema.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// compareTruth checks every port of every address against the server's
// truth; closed is the default.
func compareTruth(t *testing.T, got map[netip.AddrPort]portTruth, truths map[netip.Addr]map[uint16]portTruth, ports int) {
	t.Helper()
	wrong := 0
	for a, truth := range truths {
		for p := 1; p <= ports; p++ {
			ap := netip.AddrPortFrom(a, uint16(p))
			want, ok := truth[uint16(p)]
			if !ok {
				want = portTruth{"closed", "reset"}
			}
			if g := got[ap]; g != want {
				wrong++
				if wrong <= 10 {
					t.Errorf("%v: %s %s, want %s %s", ap, g.state, g.reason, want.state, want.reason)
				}
			}
		}
	}
	if wrong > 10 {
		t.Errorf("... %d ports wrong in all", wrong)
	}
}

// TestScanLab scans every port of the lab server at the fastest rate, at
// the default rate and through 1% random loss, 16 IPv4 hosts and 16 IPv6
// hosts, and 4 shards, each compared port by port with the server's truth.
func TestScanLab(t *testing.T) {
	l := labtest.New(t)
	truth4 := serverTruth(t, l, l.ServerV4)
	v4 := map[netip.Addr]map[uint16]portTruth{l.ServerV4: truth4}

	for _, rate := range []string{"1000000", ""} {
		name := "rate=" + rate
		if rate == "" {
			name = "rate=default"
		}
		t.Run(name, func(t *testing.T) {
			args := []string{l.ServerV4.String(), "-p", "1-65535"}
			if rate != "" {
				args = append(args, "--rate", rate)
			}
			got, sum := scanResults(t, l, args...)
			compareTruth(t, got, v4, 65535)
			t.Logf("%v in %.0f ms: %v", args, sum["elapsed_ms"], sum["scan"])
		})
	}
	t.Run("loss=1%", func(t *testing.T) {
		if err := l.SetLoss(1); err != nil {
			t.Fatal(err)
		}
		defer l.SetLoss(0)
		got, sum := scanResults(t, l, l.ServerV4.String(), "-p", "1-65535", "--rate", "1000000")
		compareTruth(t, got, v4, 65535)
		led := sum["scan"].(map[string]any)
		if led["answered_after_retry"].(float64) == 0 {
			t.Errorf("no answer after a retry through 1%% loss: %v", led)
		}
		t.Logf("through 1%% loss in %.0f ms: %v", sum["elapsed_ms"], led)
	})
	// Linux sends at most one ICMP error a second to one destination
	// after a burst of 6 (net.ipv4.icmp_ratelimit, per peer): the rejects
	// of 16 hosts' ports 83 and 84 would mostly be silent, and nothing but
	// waiting seconds per port could tell. The truth this test compares
	// with is the firewall's, so the server sends every error.
	for _, k := range []string{"net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"} {
		if out, err := exec.Command("ip", "netns", "exec", l.ServerNS, "sysctl", "-qw", k).CombinedOutput(); err != nil {
			t.Fatalf("sysctl %s: %v\n%s", k, err, out)
		}
	}
	t.Run("16-hosts", func(t *testing.T) {
		for _, family := range []struct {
			target string
			first  netip.Addr
		}{{"198.51.100.2-17", l.ServerV4}, {"2001:db8::2-2001:db8::11", l.ServerV6}} {
			truths := map[netip.Addr]map[uint16]portTruth{}
			a := family.first
			for range 16 {
				truths[a] = serverTruth(t, l, a)
				a = a.Next()
			}
			got, _ := scanResults(t, l, family.target, "-p", "1-1024", "--rate", "1000000")
			compareTruth(t, got, truths, 1024)
		}
	})
	t.Run("own-address-in-range", func(t *testing.T) {
		// 198.51.100.0/29 holds our own 198.51.100.1 (answered by our
		// kernel over lo) and the server's .2-.6: the range's route is
		// not lo, and every answer is read.
		got, _ := scanResults(t, l, "198.51.100.0/29", "-p", "80,81")
		for ap, g := range got {
			want := portTruth{"closed", "reset"}
			if ap == netip.AddrPortFrom(l.ServerV4, 80) {
				want = portTruth{"open", "syn-ack"}
			}
			if g != want {
				t.Errorf("%v: %s %s, want %s %s", ap, g.state, g.reason, want.state, want.reason)
			}
		}
		if len(got) != 12 {
			t.Errorf("%d results, want 12", len(got))
		}
	})
	t.Run("shards", func(t *testing.T) {
		union := map[netip.AddrPort]portTruth{}
		for i := 1; i <= 4; i++ {
			got, _ := scanResults(t, l, "198.51.100.2-5", "-p", "1-1024", "--rate", "1000000", "--shard", fmt.Sprintf("%d/4", i))
			for k, v := range got {
				if _, dup := union[k]; dup {
					t.Errorf("%v in two shards", k)
				}
				union[k] = v
			}
		}
		truths := map[netip.Addr]map[uint16]portTruth{}
		a := l.ServerV4
		for range 4 {
			truths[a] = serverTruth(t, l, a)
			a = a.Next()
		}
		if len(union) != 4*1024 {
			t.Errorf("the shards hold %d results, want %d", len(union), 4*1024)
		}
		compareTruth(t, union, truths, 1024)
	})
}

// TestScanLabInterrupt: Ctrl-C in the middle of a scan prints the results
// so far, the rest as undecided, and a ledger that adds up; exit 2.
func TestScanLabInterrupt(t *testing.T) {
	l := labtest.New(t)
	out, errb := interruptedAfterASecond(t, l, "probe", l.ServerV4.String(), "-p", "1-65535", "--rate", "20000")
	text := out.String()
	m := regexp.MustCompile(`ledger: (\d+) answered at the first probe \+ (\d+) after a retry \+ (\d+) silent after every retry \+ (\d+) silent while our kernel dropped replies \+ (\d+) silent on hosts our SYNs never left for \+ (\d+) refused by our own firewall \+ (\d+) interrupted = (\d+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no ledger in:\n%s\nstderr: %s", text, errb.String())
	}
	n := make([]int, len(m))
	for i := 1; i < len(m); i++ {
		n[i], _ = strconv.Atoi(m[i])
	}
	if n[1]+n[2]+n[3]+n[4]+n[5]+n[6]+n[7] != n[8] || n[8] != 65535 || n[1] < 1000 || n[7] < 1000 {
		t.Errorf("ledger %v: want about 20,000 answered, the rest interrupted, 65535 in all", m[1:])
	}
	if !strings.Contains(text, "Not shown: ") || !strings.Contains(text, "undecided tcp ports (interrupted") {
		t.Errorf("no Not shown lines:\n%s", text)
	}
	if !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("stderr: %q", errb.String())
	}
}

// TestScanLabNoNeighbour: addresses of the lab subnet that no host holds
// never answer ARP or neighbour discovery: their ports are undecided
// (no-neighbour), with the reason, never filtered; the server's ports
// beside them are exact.
func TestScanLabNoNeighbour(t *testing.T) {
	l := labtest.New(t)
	for _, target := range []string{"198.51.100.200", "2001:db8::200"} {
		got, sum := scanResults(t, l, target, "-p", "1-100", "--rate", "100000")
		for ap, r := range got {
			if r != (portTruth{"undecided", "no-neighbour"}) {
				t.Errorf("%v: %s %s, want undecided no-neighbour", ap, r.state, r.reason)
			}
		}
		if led := sum["scan"].(map[string]any); led["never_left"].(float64) != 100 {
			t.Errorf("%s: ledger %v", target, led)
		}
	}
	r := runClient(t, l, binary(t), "probe", "198.51.100.2", "198.51.100.201", "-p", "80-81", "--why")
	for _, want := range []string{"198.51.100.201: 2 ports undecided: the next hop 198.51.100.201 on veth0 never answered ARP",
		"it never answered ARP/neighbour discovery: our packets do not leave"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("no %q:\n%s", want, r.stdout)
		}
	}
}

// TestScanLabOwnHost: a SYN our own output firewall drops leaves its port
// undecided (our-firewall) while the scan finds the others; with the link
// down (the server's end of the veth pair unplugged) every port is
// undecided (link-down), never filtered.
func TestScanLabOwnHost(t *testing.T) {
	l := labtest.New(t)
	truth := serverTruth(t, l, l.ServerV4)
	cmd := exec.Command("ip", "netns", "exec", l.ClientNS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader("table inet tcpshake_scan_test {\n\tchain out {\n\t\ttype filter hook output priority 0;\n\t\ttcp dport 81 drop\n\t}\n}\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	got, _ := scanResults(t, l, l.ServerV4.String(), "-p", "1-100", "--rate", "100000")
	for p := uint16(1); p <= 100; p++ {
		want, ok := truth[p]
		if !ok {
			want = portTruth{"closed", "reset"}
		}
		if p == 81 {
			want = portTruth{"undecided", "our-firewall"}
		}
		if g := got[netip.AddrPortFrom(l.ServerV4, p)]; g != want {
			t.Errorf("port %d: %s %s, want %s %s", p, g.state, g.reason, want.state, want.reason)
		}
	}
	r := runClient(t, l, binary(t), "probe", l.ServerV4.String(), "-p", "80-84", "--why", "--rate", "1000")
	for _, want := range []string{"our output firewall (nftables output hook, may drop what we send): inet tcpshake_scan_test out (1 rules, policy accept)",
		"route to 198.51.100.2: interface veth0, source 198.51.100.1", "link veth0: UP", "81/tcp    undecided  our-firewall",
		"ICMP errors seen: admin-prohibited from 198.51.100.2 (1 port), port-unreach from 198.51.100.2 (1 port)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--why does not say %q:\n%s", want, r.stdout)
		}
	}
	// A single probe (the conversation view) goes on past the refused SYN
	// as well, and calls only that port undecided.
	r = runClient(t, l, binary(t), "probe", l.ServerV4.String(), "-p", "80-82", "--retries", "0", "--json")
	single := map[uint16]portTruth{}
	for _, ev := range jsonEvents(t, r.stdout) {
		if ev["type"] == "result" {
			single[uint16(ev["port"].(float64))] = portTruth{ev["state"].(string), ev["reason"].(string)}
		}
	}
	for p := uint16(80); p <= 82; p++ {
		want, ok := truth[p]
		if !ok {
			want = portTruth{"closed", "reset"}
		}
		if p == 81 {
			want = portTruth{"undecided", "our-firewall"}
		}
		if single[p] != want {
			t.Errorf("single probe, port %d: %v, want %v (exit %d)\n%s%s", p, single[p], want, r.code, r.stdout, r.stderr)
		}
	}
	exec.Command("ip", "netns", "exec", l.ClientNS, "nft", "delete", "table", "inet", "tcpshake_scan_test").Run()

	if out, err := exec.Command("ip", "-n", l.ServerNS, "link", "set", l.ServerIf, "down").CombinedOutput(); err != nil {
		t.Fatalf("link down: %v\n%s", err, out)
	}
	defer exec.Command("ip", "-n", l.ServerNS, "link", "set", l.ServerIf, "up").Run()
	got, _ = scanResults(t, l, l.ServerV4.String(), "-p", "1-20", "--rate", "100000")
	for ap, r := range got {
		if r != (portTruth{"undecided", "link-down"}) {
			t.Errorf("%v: %s %s, want undecided link-down", ap, r.state, r.reason)
		}
	}
	// A single probe says it as well.
	r = runClient(t, l, binary(t), "probe", l.ServerV4.String(), "-p", "81", "--json")
	for _, ev := range jsonEvents(t, r.stdout) {
		if ev["type"] == "result" && (ev["state"] != "undecided" || ev["reason"] != "link-down") {
			t.Errorf("single probe with the link down: %v", ev)
		}
		if ev["type"] == "warning" && !strings.Contains(ev["message"].(string), "the link veth0 is down") {
			t.Errorf("warning: %v", ev)
		}
	}
	r = runClient(t, l, binary(t), "probe", l.ServerV4.String(), "-p", "1-20", "--rate", "1000", "--why")
	for _, want := range []string{"20 ports undecided: the link veth0 is down", "— down or no carrier: nothing leaves by it", "our output firewall: no nftables chain"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("no %q:\n%s", want, r.stdout)
		}
	}
}

// interruptedAfterASecond runs tcpshake with args in the client namespace,
// interrupts it (SIGINT) after a second, checks that it exits with status
// 2, and returns what it printed.
func interruptedAfterASecond(t *testing.T, l lab.Lab, args ...string) (out, errb *strings.Builder) {
	t.Helper()
	out, errb = &strings.Builder{}, &strings.Builder{}
	cmd := exec.Command(binary(t), args...)
	cmd.Stdout, cmd.Stderr = out, errb
	if err := lab.Do(l.ClientNS, cmd.Start); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("exit %v, want status 2", err)
	}
	return out, errb
}
