//go:build linux

package app_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// exitOf waits (at most 10 s) for cmd's end and returns its exit code, -1
// when a signal killed it.
func exitOf(t *testing.T, exited <-chan error, what string) (code int, sig syscall.Signal) {
	t.Helper()
	var err error
	select {
	case err = <-exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10 s after %s", what)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return -1, ws.Signal()
		}
		return ee.ExitCode(), 0
	}
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return 0, 0
}

// TestHandshakeHangupQuit sends SIGHUP (the terminal closed) and SIGQUIT
// (Ctrl-\) to `handshake --hold 30s`: each must be handled like SIGTERM —
// exit status 2, the peer reset (not left ESTABLISHED), no guard table left
// — and SIGQUIT must not make the Go runtime dump its goroutines.
func TestHandshakeHangupQuit(t *testing.T) {
	labtest.EachPeer(t, false, func(t *testing.T, l lab.Lab) {
		bin := binary(t)
		for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGQUIT} {
			t.Run(sig.String(), func(t *testing.T) {
				sport := randomPort()
				var out, errb bytes.Buffer
				cmd := exec.Command(bin, "handshake", fmt.Sprintf("%v:%d", l.ServerV4, lab.PortHold),
					"--sport", fmt.Sprint(sport), "--hold", "30s", "--view", "list")
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
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				code, killedBy := exitOf(t, exited, sig.String())
				if killedBy != 0 || code != 2 {
					t.Errorf("after %v: exit status %d (killed by %v), want 2\nstdout:\n%s\nstderr:\n%s", sig, code, killedBy, out.String(), errb.String())
				}
				if s := errb.String(); strings.Contains(s, "goroutine ") || strings.Contains(s, "SIGQUIT") {
					t.Errorf("after %v the runtime dumped its goroutines:\n%s", sig, s)
				}
				if got := guardTables(t, l.ClientNS); len(got) != 0 {
					t.Errorf("after %v, guard tables left in the client namespace: %q", sig, got)
				}
				time.Sleep(50 * time.Millisecond) // the RST's way to the server
				if st := serverState(t, l, lab.PortHold, sport); st != "CLOSED" {
					t.Errorf("after %v the server's socket is %s, want CLOSED (reset)\nstdout:\n%s", sig, st, out.String())
				}
			})
		}
	})
}

// TestHandshakeBrokenPipe is `tcpshake handshake … | head -1`: standard
// output is a pipe whose reader goes away while the connection is held and
// the peer keeps sending. The next write must not kill the process (SIGPIPE);
// it must reset the peer and exit with status 2.
func TestHandshakeBrokenPipe(t *testing.T) {
	l := labtest.New(t)
	bin := binary(t)

	// A server of our own in the lab's server namespace that sends a line
	// every 50 ms (each one a step tcpshake prints), for at most 10 s.
	var ln net.Listener
	if err := lab.Do(l.ServerNS, func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(l.ServerV4.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	serverEnd := make(chan error, 1) // why the server's connection ended
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverEnd <- err
			return
		}
		defer c.Close()
		for range 200 {
			if _, err := c.Write([]byte("tick\n")); err != nil {
				serverEnd <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		serverEnd <- errors.New("still connected after 10 s of ticks")
	}()

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd := exec.Command(bin, "handshake", ln.Addr().String(), "--hold", "30s", "--view", "list")
	cmd.Stdout, cmd.Stderr = pw, &errb
	if err := lab.Do(l.ClientNS, cmd.Start); err != nil {
		t.Fatal(err)
	}
	pw.Close() // the child holds the only write end now
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})
	// Like head: read until the first tick is shown (the connection is
	// established and the peer sends), then go away.
	var first string
	for r := bufio.NewReader(pr); !strings.Contains(first, "tick"); {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("output ended before the first tick: %v\nstdout:\n%s\nstderr:\n%s", err, first, errb.String())
		}
		first += line
	}
	pr.Close()
	code, killedBy := exitOf(t, exited, "closing the pipe")
	if killedBy != 0 || code != 2 {
		t.Errorf("exit status %d (killed by %v) after the reader of its output went away, want 2\nstdout before the pipe closed:\n%s\nstderr:\n%s", code, killedBy, first, errb.String())
	}
	select {
	case err := <-serverEnd:
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Errorf("the server's connection ended with %v, want a reset from tcpshake", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the server's connection was not reset within 5 s of tcpshake's exit")
	}
	if got := guardTables(t, l.ClientNS); len(got) != 0 {
		t.Errorf("guard tables left in the client namespace: %q", got)
	}
}
