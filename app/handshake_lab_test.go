//go:build linux

package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
	"tcpshake/probe/guard"
	"tcpshake/probe/observe"
)

// These tests run the built binary (binary(t), built once per test binary)
// inside the lab's client namespace against the lab server.

// guardTables lists the tcpshake guard tables ("tcpshake_<pid>_<8 hex digits>") in the
// network namespace ns, with google/nftables over a netlink socket opened in
// that namespace (no nft binary needed).
func guardTables(t *testing.T, ns string) []string {
	t.Helper()
	var out []string
	for _, name := range labtest.Tables(t, ns) {
		if guard.IsTable(name) {
			out = append(out, name)
		}
	}
	return out
}

// randomPort is a source port for one test run.
func randomPort() uint16 {
	var b [2]byte
	rand.Read(b[:])
	return 40000 + (uint16(b[0])<<8|uint16(b[1]))%20000
}

// serverState is the lab server's socket state for the connection from
// the client's port sport to port dport.
func serverState(t *testing.T, l lab.Lab, dport, sport uint16) string {
	t.Helper()
	if l.Peer == lab.PeerLWIP {
		return labtest.PeerState(t, l, netip.AddrPortFrom(l.ServerV4, dport), netip.AddrPortFrom(l.ClientV4, sport))
	}
	d, err := observe.Open(l.ServerNS)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st, err := d.State(netip.AddrPortFrom(l.ServerV4, dport), netip.AddrPortFrom(l.ClientV4, sport))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestHandshakeSignals interrupts `handshake --hold 30s` with SIGINT,
// SIGTERM and SIGKILL: no guard table may be left in the client namespace;
// for SIGINT and SIGTERM the peer must not be left ESTABLISHED (the handler
// resets it). SIGKILL cannot be handled: the peer stays ESTABLISHED.
func TestHandshakeSignals(t *testing.T) {
	labtest.EachPeer(t, false, func(t *testing.T, l lab.Lab) {
		bin := binary(t)
		tests := []struct {
			sig       syscall.Signal
			wantCode  int
			wantPeers []string // acceptable server states afterwards
		}{
			{syscall.SIGINT, 2, []string{"CLOSED"}},
			{syscall.SIGTERM, 2, []string{"CLOSED"}},
			{syscall.SIGKILL, -1, []string{"ESTABLISHED"}},
		}
		for _, tt := range tests {
			t.Run(tt.sig.String(), func(t *testing.T) {
				sport := randomPort()
				var out, errb bytes.Buffer
				args := []string{"handshake", fmt.Sprintf("%v:%d", l.ServerV4, lab.PortHold),
					"--sport", fmt.Sprint(sport), "--hold", "30s", "--view", "list"}
				if l.Peer == lab.PeerLinux {
					args = append(args, "--observe-netns", l.ServerNS)
				}
				cmd := exec.Command(bin, args...)
				cmd.Stdout, cmd.Stderr = &out, &errb
				if err := lab.Do(l.ClientNS, cmd.Start); err != nil {
					t.Fatal(err)
				}
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				t.Cleanup(func() {
					if cmd.ProcessState == nil {
						cmd.Process.Kill()
						<-exited
					}
				})
				deadline := time.Now().Add(5 * time.Second)
				for serverState(t, l, lab.PortHold, sport) != "ESTABLISHED" {
					if time.Now().After(deadline) {
						t.Fatalf("the server never saw the connection ESTABLISHED\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
					}
					time.Sleep(10 * time.Millisecond)
				}
				if got := guardTables(t, l.ClientNS); len(got) != 1 {
					t.Fatalf("while holding, guard tables in the client namespace: %q, want one", got)
				}
				if err := cmd.Process.Signal(tt.sig); err != nil {
					t.Fatal(err)
				}
				var err error
				select {
				case err = <-exited:
				case <-time.After(10 * time.Second):
					t.Fatalf("still running 10 s after %v", tt.sig)
				}
				code := 0
				if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
					code = ee.ExitCode()
				}
				if code != tt.wantCode {
					t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out.String(), errb.String())
				}
				if got := guardTables(t, l.ClientNS); len(got) != 0 {
					t.Errorf("after %v, guard tables left in the client namespace: %q", tt.sig, got)
				}
				time.Sleep(50 * time.Millisecond) // the RST's way to the server
				st := serverState(t, l, lab.PortHold, sport)
				if !contains(tt.wantPeers, st) {
					t.Errorf("after %v the server's socket is %s, want one of %q", tt.sig, st, tt.wantPeers)
				}
				t.Logf("after %v: exit %d, server socket %s", tt.sig, code, st)
			})
		}
	})
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// runShellScript runs `tcpshake shell` in the client namespace with its
// standard input read from a script file, and returns its JSON lines.
func runShellScript(t *testing.T, l lab.Lab, script string, args ...string) (string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script.txt")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	argv := append([]string{"shell", fmt.Sprintf("%v:%d", l.ServerV4, lab.PortEcho), "--json", "--time-wait", "100ms"}, args...)
	cmd := exec.CommandContext(ctx, binary(t), argv...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, &out, &errb
	err = lab.Do(l.ClientNS, cmd.Run)
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	if errb.Len() > 0 {
		t.Logf("stderr: %s", errb.String())
	}
	return out.String(), code
}

// receivedData joins the data of the segments the shell received.
func receivedData(t *testing.T, out string) (data string, flags []string) {
	t.Helper()
	for _, ev := range jsonEvents(t, out) {
		if ev["type"] != "step" {
			continue
		}
		switch ev["direction"] {
		case "received":
			if d, ok := ev["data"].(string); ok {
				data += d
			}
			flags = append(flags, "<"+ev["flags"].(string))
		case "sent":
			flags = append(flags, ">"+ev["flags"].(string))
		}
	}
	return data, flags
}

func TestShellScript(t *testing.T) {
	labtest.EachPeer(t, false, func(t *testing.T, l lab.Lab) {
		tests := []struct {
			name     string
			script   string
			wantData string
			// the conversation must begin so
			wantStart []string
		}{
			{
				name:      "full session",
				script:    "# a whole connection by hand\nsyn\nwait 200ms\nack\nsend hello\\n\nwait 300ms\nfin\nwait 300ms\nquit\n",
				wantData:  "hello\n",
				wantStart: []string{">S", "<S.", ">.", ">P."},
			},
			{
				name: "out-of-order segment",
				script: "syn\nwait 200ms\nack\nsegment PA seq=+3 data=xyz\nwait 100ms\nsend abc\nwait 300ms\n" +
					"state\nquit\n",
				wantData:  "abcxyz",
				wantStart: []string{">S", "<S.", ">.", ">P.", "<.", ">P."},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				out, code := runShellScript(t, l, tt.script)
				if code != 0 {
					t.Errorf("exit code %d, want 0\n%s", code, out)
				}
				data, flags := receivedData(t, out)
				if data != tt.wantData {
					t.Errorf("echo %q, want %q\n%s", data, tt.wantData, out)
				}
				if len(flags) < len(tt.wantStart) || !equalStrings(flags[:len(tt.wantStart)], tt.wantStart) {
					t.Errorf("conversation %q, want it to begin %q", flags, tt.wantStart)
				}
				evs := jsonEvents(t, out)
				sum := evs[len(evs)-1]
				if sum["type"] != "summary" || sum["outcome"] != "ok" || sum["local_state"] != "CLOSED" {
					t.Errorf("last event %v, want an ok summary ending CLOSED", sum)
				}
			})
		}
	})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
