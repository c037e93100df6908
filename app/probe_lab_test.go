//go:build linux

package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// binDir holds the tcpshake binary the lab tests run; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildOnce builds the binary the first time a lab test asks for it.
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tcpshake-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	// Readable by the unprivileged user the capability test runs as.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tcpshake")
	cmd := exec.Command("go", "build", "-o", bin, "tcpshake")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", errors.New("go build: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
})

func binary(t *testing.T) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// runResult is what one run of the binary did.
type runResult struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// runClient runs argv (the binary, or setpriv then the binary) as a process
// of the lab's client host: forked from a thread inside the client
// namespace, so it lives there.
func runClient(t *testing.T, l lab.Lab, argv ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := lab.Do(l.ClientNS, cmd.Run)
	r := runResult{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %q: %v", argv, err)
	}
	return r
}

// jsonEvents parses JSON lines, failing on any line that is not an object
// with a "type".
func jsonEvents(t *testing.T, s string) []map[string]any {
	t.Helper()
	var evs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	// A received step carries its data: a 64 KB segment (GRO on veth) is
	// 128 KB of hex, beyond the scanner's default line limit.
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line does not parse as JSON: %v\n%s", err, sc.Bytes())
		}
		if _, ok := ev["type"].(string); !ok {
			t.Fatalf("line without a \"type\": %s", sc.Bytes())
		}
		evs = append(evs, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the JSON lines: %v", err)
	}
	return evs
}

// TestProbeLab probes the lab server over the real kernel: every kind of
// port on both address families, exit codes, JSON, the server's socket table
// afterwards, and running without CAP_NET_RAW.
func TestProbeLab(t *testing.T) {
	labtest.EachPeer(t, false, func(t *testing.T, l lab.Lab) {
		bin := binary(t)

		type want struct{ state, reason string }
		wants := map[float64]want{
			80: {"open", "syn-ack"},
			81: {"closed", "reset"},
			82: {"filtered", "no-response"},
			83: {"filtered", "port-unreach"},
			84: {"filtered", "admin-prohibited"},
		}
		for _, server := range []netip.Addr{l.ServerV4, l.ServerV6} {
			t.Run("ports/"+server.String(), func(t *testing.T) {
				r := runClient(t, l, bin, "probe", server.String(), "-p", "80-84", "--retries", "0", "--timeout", "300ms", "--json")
				if r.code != 0 {
					t.Errorf("exit status %d, want 0 (a port is open); stderr:\n%s", r.code, r.stderr)
				}
				if r.stderr != "" {
					t.Errorf("stderr:\n%s", r.stderr)
				}
				seen := map[float64]bool{}
				for _, ev := range jsonEvents(t, r.stdout) {
					if ev["type"] != "result" {
						continue
					}
					port, _ := ev["port"].(float64)
					w, ok := wants[port]
					if !ok {
						t.Errorf("result for unexpected port: %v", ev)
						continue
					}
					seen[port] = true
					if ev["state"] != w.state || ev["reason"] != w.reason {
						t.Errorf("port %v: %v/%v, want %s/%s", port, ev["state"], ev["reason"], w.state, w.reason)
					}
					if ev["addr"] != server.String() {
						t.Errorf("port %v: addr %v, want %v", port, ev["addr"], server)
					}
					rtt, answered := ev["rtt_ms"].(float64)
					if w.reason == "no-response" {
						if answered {
							t.Errorf("port %v: rtt %v ms without an answer", port, rtt)
						}
						continue
					}
					if !answered || rtt <= 0 || rtt >= 5 {
						t.Errorf("port %v: rtt %v ms, want 0 < rtt < 5 over a veth pair", port, ev["rtt_ms"])
					}
				}
				if len(seen) != len(wants) {
					t.Errorf("results for ports %v, want 80-84", seen)
				}
			})

			t.Run("text/"+server.String(), func(t *testing.T) {
				r := runClient(t, l, bin, "probe", netip.AddrPortFrom(server, 81).String())
				if r.code != 1 {
					t.Errorf("exit status %d, want 1 (no port open); stderr:\n%s", r.code, r.stderr)
				}
				if !strings.Contains(r.stdout, "81/tcp") || !strings.Contains(r.stdout, "closed") {
					t.Errorf("text output lacks the port table row:\n%s", r.stdout)
				}
			})

			t.Run("no SYN-RECEIVED left/"+server.String(), func(t *testing.T) {
				r := runClient(t, l, bin, "probe", netip.AddrPortFrom(server, 80).String(), "--json")
				if r.code != 0 {
					t.Fatalf("exit status %d, want 0; stderr:\n%s", r.code, r.stderr)
				}
				var sport uint16
				for _, ev := range jsonEvents(t, r.stdout) {
					if ev["type"] == "step" && ev["direction"] == "sent" && ev["flags"] == "S" {
						ap, err := netip.ParseAddrPort(ev["src"].(string))
						if err != nil {
							t.Fatal(err)
						}
						sport = ap.Port()
					}
				}
				if sport == 0 {
					t.Fatalf("no SYN step in the output:\n%s", r.stdout)
				}
				deadline := time.Now().Add(200 * time.Millisecond)
				for {
					var left []string
					if l.Peer == lab.PeerLinux {
						left = synRecv(t, l.ServerNS, sport)
					} else {
						left = labtest.ServerConnsFrom(t, l, sport) // what lwIP holds, read from the program
					}
					if len(left) == 0 {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("server still holds %v in SYN-RECV 200 ms after the probe", left)
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
		}

		t.Run("exit 1 when nothing is open", func(t *testing.T) {
			r := runClient(t, l, bin, "probe", l.ServerV4.String(), "-p", "81,83", "-q")
			if r.code != 1 {
				t.Errorf("exit status %d, want 1; stderr:\n%s", r.code, r.stderr)
			}
		})

		t.Run("without CAP_NET_RAW", func(t *testing.T) {
			if _, err := exec.LookPath("setpriv"); err != nil {
				t.Skip("setpriv (util-linux) is not installed")
			}
			r := runClient(t, l, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
				bin, "probe", l.ServerV4.String()+":80")
			if r.code != 2 {
				t.Errorf("exit status %d, want 2", r.code)
			}
			checkOneLine(t, r.stderr, "CAP_NET_RAW")
			if !strings.Contains(r.stderr, "setcap cap_net_raw") {
				t.Errorf("stderr does not say how to grant the capability: %q", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty:\n%s", r.stdout)
			}
		})

		t.Run("unresolvable host", func(t *testing.T) {
			// Inside the client namespace there is no route but to the lab, so the
			// lookup fails without a DNS query leaving it.
			r := runClient(t, l, bin, "probe", "nohost.invalid", "-p", "80")
			if r.code != 2 {
				t.Errorf("exit status %d, want 2", r.code)
			}
			checkOneLine(t, r.stderr, "nohost.invalid")
			if r.elapsed > 10*time.Second {
				t.Errorf("took %v to give up", r.elapsed)
			}
		})
	})
}

// synRecv lists the server namespace's sockets in SYN-RECV with our source
// port as their remote port, both families.
func synRecv(t *testing.T, ns string, sport uint16) []string {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatalf("open namespace %s: %v", ns, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h, unix.NETLINK_INET_DIAG)
	if err != nil {
		t.Fatalf("sock_diag in %s: %v", ns, err)
	}
	defer nh.Close()
	const tcpSynRecv = 3 // include/net/tcp_states.h
	var out []string
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := nh.SocketDiagTCP(fam)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			t.Fatalf("sock_diag in %s: %v", ns, err)
		}
		for _, s := range socks {
			if s.State == tcpSynRecv && s.ID.DestinationPort == sport {
				out = append(out, s.ID.Source.String()+" <- "+s.ID.Destination.String())
			}
		}
	}
	return out
}
