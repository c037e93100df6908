package lab

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// startLoopback serves every service on its own 127.0.0.1 port (no privileges needed) and returns the addresses.
func startLoopback(t *testing.T, l Lab) map[service]string {
	t.Helper()
	addrs := map[service]string{}
	var bs []binding
	for _, svc := range []service{echoService, holdService, halfService, httpService} {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		addrs[svc] = ln.Addr().String()
		bs = append(bs, binding{svc: svc, ln: ln})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		newServer(l).run(ctx, bs)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("server did not stop within 5s of cancel")
		}
	})
	return addrs
}

func dialTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

func TestServicesLoopback(t *testing.T) {
	l := New("unit")
	l.HoldAfterEOF = 300 * time.Millisecond
	addrs := startLoopback(t, l)

	t.Run("echo", func(t *testing.T) {
		c := dialTCP(t, addrs[echoService])
		want := strings.Repeat("tcpshake ", 20000) // larger than one socket buffer write
		errc := make(chan error, 1)
		go func() {
			_, err := io.WriteString(c, want)
			if err == nil {
				err = c.CloseWrite()
			}
			errc <- err
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read echo: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
		if len(got) != len(want) || string(got) != want {
			t.Errorf("echo returned %d bytes, want the %d sent", len(got), len(want))
		}
	})

	t.Run("hold", func(t *testing.T) {
		c := dialTCP(t, addrs[holdService])
		if _, err := io.WriteString(c, "discard me"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		held := time.Since(start)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(got) != 0 {
			t.Errorf("hold sent %q, want nothing", got)
		}
		if held < l.HoldAfterEOF-20*time.Millisecond {
			t.Errorf("hold closed after %v, want at least HoldAfterEOF %v", held, l.HoldAfterEOF)
		}
	})

	t.Run("half", func(t *testing.T) {
		c := dialTCP(t, addrs[halfService])
		// Without writing or closing anything, the server's line and FIN arrive.
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if diff := cmp.Diff(halfBanner, string(got)); diff != "" {
			t.Errorf("half banner (-want +got):\n%s", diff)
		}
		// Our side can still send: the server keeps reading until our FIN.
		if _, err := io.WriteString(c, "still open\n"); err != nil {
			t.Errorf("write after server FIN: %v", err)
		}
	})

	tests := []struct {
		name, request string
	}{
		{"get", "GET / HTTP/1.0\r\nHost: lab\r\n\r\n"},
		{"partial request", "GET / HTTP/1.0\r\n"}, // answered after the 2 s read limit
	}
	for _, tt := range tests {
		t.Run("http/"+tt.name, func(t *testing.T) {
			c := dialTCP(t, addrs[httpService])
			if _, err := io.WriteString(c, tt.request); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if diff := cmp.Diff(httpResponse(), string(got)); diff != "" {
				t.Errorf("http response (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHTTPResponseIsValid(t *testing.T) {
	resp := httpResponse()
	r := bufio.NewReader(strings.NewReader(resp))
	status, _ := r.ReadString('\n')
	if diff := cmp.Diff("HTTP/1.0 200 OK\r\n", status); diff != "" {
		t.Errorf("status line (-want +got):\n%s", diff)
	}
	head, body, ok := strings.Cut(resp, "\r\n\r\n")
	if !ok {
		t.Fatal("no end of header")
	}
	if diff := cmp.Diff(httpBody, body); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	if !strings.Contains(head, "\r\nContent-Length: 28\r\n") {
		t.Errorf("header %q lacks Content-Length: 28", head)
	}
}

func TestServerStopsOnCancel(t *testing.T) {
	l := New("unit")
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		newServer(l).run(ctx, []binding{{svc: holdService, ln: ln}})
		close(done)
	}()
	c := dialTCP(t, ln.Addr().String())
	if _, err := io.WriteString(c, "x"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop within 5s of cancel")
	}
	// The open connection was closed by the server.
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Errorf("read after cancel: %v", err)
	}
	if _, err := net.DialTimeout("tcp4", ln.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts after cancel")
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}
