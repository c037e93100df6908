//go:build linux

package app_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
	"time"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// verifyEvents runs probe with args in the lab's client, checks every JSON
// line against docs/json-schema.json and returns the verify events by port
// and the warnings.
func verifyEvents(t *testing.T, l lab.Lab, args ...string) (map[float64]map[string]any, []string) {
	t.Helper()
	r := runClient(t, l, append([]string{binary(t), "probe", "--json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("probe %q: exit status %d; stderr:\n%s", args, r.code, r.stderr)
	}
	schema := scanSchema(t)
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for n := 1; sc.Scan(); n++ {
		if err := schema.ValidateLine(sc.Bytes()); err != nil {
			t.Errorf("line %d: %v\n%s", n, err, sc.Text())
		}
	}
	got := map[float64]map[string]any{}
	var warnings []string
	for _, ev := range jsonEvents(t, r.stdout) {
		switch ev["type"] {
		case "verify":
			got[ev["port"].(float64)] = ev
		case "warning":
			warnings = append(warnings, ev["message"].(string))
		}
	}
	return got, warnings
}

// checkVerify holds one verify event to its verdict and, when data is not
// empty, to the start of what came back.
func checkVerify(t *testing.T, got map[float64]map[string]any, port float64, verdict, data string) {
	t.Helper()
	v, ok := got[port]
	if !ok {
		t.Errorf("port %v: not verified (%d verify events)", port, len(got))
		return
	}
	if v["verdict"] != verdict || v["handshake"] != true {
		t.Errorf("port %v: verdict %v, handshake %v, want %s; %v", port, v["verdict"], v["handshake"], verdict, v)
	}
	d, _ := v["data"].(string)
	if data != "" && !strings.HasPrefix(d, data) {
		t.Errorf("port %v: data %q, want it to start with %q", port, d, data)
	}
	if data == "" && (d != "" || v["bytes"].(float64) != 0) {
		t.Errorf("port %v: %v bytes came back (%q), want none", port, v["bytes"], d)
	}
}

// TestVerifyLab verifies the lab's services on both peers: the HTTP port
// answers --hello with its page, the echo port says nothing without a hello
// and echoes one, port 13 sends its line unasked. No port is taken for a
// SYN proxy, and no guard table stays behind.
func TestVerifyLab(t *testing.T) {
	labtest.EachPeer(t, false, func(t *testing.T, l lab.Lab) {
		for _, srv := range []string{l.ServerV4.String(), l.ServerV6.String()} {
			t.Run("hello/"+srv, func(t *testing.T) {
				got, _ := verifyEvents(t, l, srv, "-p", "7,13,80,81", "--hello", `GET / HTTP/1.0\r\n\r\n`, "--timeout", "300ms")
				checkVerify(t, got, 80, "answered", "HTTP/1.0 200")
				if got[80]["peer_closed"] != true {
					t.Errorf("port 80: the server closes after its answer; peer_closed %v", got[80]["peer_closed"])
				}
				checkVerify(t, got, 7, "answered", "GET / HTTP/1.0\r\n\r\n")
				checkVerify(t, got, 13, "answered", "tcpshake lab")
				if _, ok := got[81]; ok || len(got) != 3 {
					t.Errorf("verified %d ports (81 among them: %v), want 7, 13 and 80", len(got), ok)
				}
			})
		}
		t.Run("no-hello", func(t *testing.T) {
			got, _ := verifyEvents(t, l, l.ServerV4.String(), "-p", "7,13", "--verify", "--verify-wait", "500ms", "--timeout", "300ms")
			checkVerify(t, got, 7, "silent", "")
			if w := got[7]["waited_ms"].(float64); w < 490 || w > 1000 {
				t.Errorf("port 7: waited %.0f ms, want the whole --verify-wait 500ms", w)
			}
			if got[7]["reset_sent"] != true {
				t.Errorf("port 7: no RST from us at the end: %v", got[7])
			}
			if d, _ := got[13]["data"].(string); got[13]["verdict"] != "answered" || d == "" {
				t.Errorf("port 13 sends a line unasked: %v", got[13])
			}
		})
		t.Run("text", func(t *testing.T) {
			r := runClient(t, l, binary(t), "probe", l.ServerV4.String(), "-p", "7,80", "-q", "--hello", `GET / HTTP/1.0\r\n\r\n`)
			for _, want := range []string{"VERIFY: the handshake on 2 open ports", `80/tcp    answered`, `"HTTP/1.0 200`, `7/tcp     answered`} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("no %q in:\n%s", want, r.stdout)
				}
			}
			if strings.Contains(r.stdout, "open?") {
				t.Errorf("a real port called a SYN proxy:\n%s", r.stdout)
			}
		})
		if tables := guardTables(t, l.ClientNS); len(tables) != 0 {
			t.Errorf("guard tables left behind: %v", tables)
		}
		if l.Peer == lab.PeerLinux {
			// Our RST ended every verified connection: the server keeps
			// nothing but its listeners (and the probes' TIME-WAITs, none).
			out, err := exec.Command("ip", "netns", "exec", l.ServerNS, "ss", "-tanH", "state", "all", "exclude", "listening").CombinedOutput()
			if err != nil {
				t.Fatalf("ss: %v\n%s", err, out)
			}
			if s := strings.TrimSpace(string(out)); s != "" {
				t.Errorf("the server still holds connections after the verifications:\n%s", s)
			}
		}
	})
}

// synproxy puts nftables' synproxy in front of ports (an nft range, e.g.
// "2000-2099") of the Linux lab server, in a table of its own that the test
// removes. As the nft wiki's recipe: the client's SYN is untracked, and
// with nf_conntrack_tcp_loose 0 its ACK is invalid and reaches the
// synproxy (with 1 conntrack picks the ACK up as new and the server's
// kernel, which never saw the SYN, resets it); the synproxy's own SYN to
// the service comes in on lo and must not be untracked again.
func synproxy(t *testing.T, l lab.Lab, ports string) {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	table := "tverify_" + hex.EncodeToString(b[:])
	rules := `table inet ` + table + ` {
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    iifname != "lo" tcp dport ` + ports + ` tcp flags syn notrack
  }
  chain in {
    type filter hook input priority -10; policy accept;
    iifname != "lo" tcp dport ` + ports + ` ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm
    iifname != "lo" tcp dport ` + ports + ` ct state invalid drop
  }
}
`
	cmd := exec.Command("ip", "netns", "exec", l.ServerNS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft synproxy: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "exec", l.ServerNS, "nft", "delete", "table", "inet", table).CombinedOutput(); err != nil {
			t.Errorf("nft delete table %s: %v\n%s", table, err, out)
		}
	})
	if out, err := exec.Command("ip", "netns", "exec", l.ServerNS, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0").CombinedOutput(); err != nil {
		t.Fatalf("sysctl nf_conntrack_tcp_loose: %v\n%s", err, out)
	}
}

// TestVerifyLabSYNProxy puts nftables' synproxy (the kernel answers SYN-ACK
// with a cookie and window 0 for every port of a range, then opens the
// backend connection) in front of the Linux server: ports where nothing
// listens behind it are called out, the real ones are not — in a probe, in
// a scan with more open ports than --verify-max, and with every port of the
// host behind the proxy.
func TestVerifyLabSYNProxy(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (apt-get install nftables)")
	}
	l := labtest.New(t)
	srv := l.ServerV4.String()
	synproxy(t, l, "2000-2099")
	t.Run("probe", func(t *testing.T) {
		got, _ := verifyEvents(t, l, srv, "-p", "7,80,2000-2003", "--hello", `ping\n`, "--verify-wait", "500ms", "--timeout", "300ms")
		checkVerify(t, got, 7, "answered", `ping`)
		for p := 2000.0; p <= 2003; p++ {
			checkVerify(t, got, p, "syn-proxy", "")
			ev, _ := got[p]["evidence"].([]any)
			if len(ev) == 0 || !strings.Contains(ev[0].(string), "window 0") || got[p]["peer_reset"] != true {
				t.Errorf("port %v: evidence %q, peer_reset %v", p, ev, got[p]["peer_reset"])
			}
		}
		if v := got[80]["verdict"]; v == "syn-proxy" {
			t.Errorf("port 80 called a SYN proxy: %v", got[80])
		}
	})
	t.Run("scan", func(t *testing.T) {
		got, warnings := verifyEvents(t, l, srv, "-p", "1-3000", "--rate", "50000", "--verify", "--verify-max", "8", "--verify-wait", "500ms")
		if len(got) != 8 {
			t.Errorf("%d ports verified, want 8 (--verify-max 8)", len(got))
		}
		for _, p := range []float64{7, 9, 13, 80, 85} {
			if v := got[p]["verdict"]; v == "syn-proxy" || v == nil {
				t.Errorf("port %v: verdict %v, want a real service's", p, v)
			}
		}
		for _, p := range []float64{2000, 2001, 2002} {
			checkVerify(t, got, p, "syn-proxy", "")
		}
		joined := strings.Join(warnings, "\n")
		for _, want := range []string{"97 more open ports not verified: --verify-max 8", "97 open ports not verified answered SYN-ACK with window 0"} {
			if !strings.Contains(joined, want) {
				t.Errorf("no %q in the warnings:\n%s", want, joined)
			}
		}
	})
	t.Run("every-port", func(t *testing.T) {
		synproxy(t, l, "1-1024")
		got, warnings := verifyEvents(t, l, srv, "-p", "1-100", "--rate", "50000", "--hello", `ping\n`, "--verify-max", "100", "--verify-wait", "300ms")
		checkVerify(t, got, 7, "answered", "ping")
		if why, _ := got[7]["why"].(string); !strings.Contains(why, "proxy in front of a real service") {
			t.Errorf("port 7 (echo behind the proxy): why %q", why)
		}
		for _, p := range []float64{1, 81, 82, 100} {
			checkVerify(t, got, p, "syn-proxy", "")
		}
		if j := strings.Join(warnings, "\n"); !strings.Contains(j, "every one of the 100 ports probed on "+srv+" answered SYN-ACK") {
			t.Errorf("no host evidence in the warnings:\n%s", j)
		}
	})
}

// TestVerifyLabInterrupt: Ctrl-C while ports are being verified prints what
// was verified so far, exits 2, and leaves no connection on the server (each
// one reset).
func TestVerifyLabInterrupt(t *testing.T) {
	l := labtest.New(t)
	out, errb := interruptedAfterASecond(t, l, "probe", l.ServerV4.String(), "-p", "7,9", "-q", "--verify", "--verify-wait", "20s")
	for _, want := range []string{"7/tcp     silent    interrupted after", "9/tcp     silent    interrupted after"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errb.String(), "interrupted while verifying") {
		t.Errorf("stderr: %q", errb.String())
	}
	time.Sleep(100 * time.Millisecond)
	if s, err := exec.Command("ip", "netns", "exec", l.ServerNS, "ss", "-tanH", "state", "all", "exclude", "listening").CombinedOutput(); err != nil || strings.TrimSpace(string(s)) != "" {
		t.Errorf("the server after the interrupt (%v):\n%s", err, s)
	}
}
