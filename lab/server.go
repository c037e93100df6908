package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// service is one of the lab's TCP services.
type service int

const (
	echoService service = iota
	holdService
	halfService
	httpService
)

func (s service) String() string {
	switch s {
	case echoService:
		return "echo"
	case holdService:
		return "hold"
	case halfService:
		return "half"
	case httpService:
		return "http"
	}
	return fmt.Sprintf("service(%d)", int(s))
}

// serviceFor returns the service that listens on port.
func serviceFor(port int) (service, bool) {
	switch port {
	case PortEcho:
		return echoService, true
	case PortHold:
		return holdService, true
	case PortHalf:
		return halfService, true
	case PortHTTP:
		return httpService, true
	}
	return 0, false
}

// Texts the services send.
const (
	halfBanner = "tcpshake lab: half-close demo\r\n"
	httpBody   = "hello from the tcpshake lab\n"
)

// httpResponse is the complete answer of the http service.
func httpResponse() string {
	return fmt.Sprintf("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		len(httpBody), httpBody)
}

// Limits of the http service's request read.
const (
	httpReadTimeout = 2 * time.Second
	httpMaxRequest  = 4 << 10
)

// maxConns bounds the connections one Serve handles at once; more are closed at once.
const maxConns = 1024

// binding is a listener and the service it serves.
type binding struct {
	svc service
	ln  net.Listener
}

// server runs services on already open listeners.
type server struct {
	hold, idle time.Duration
	sem        chan struct{}
	wg         sync.WaitGroup
}

func newServer(l Lab) *server {
	return &server{hold: l.holdAfterEOF(), idle: l.idleTimeout(), sem: make(chan struct{}, maxConns)}
}

// run serves every binding until ctx is done, then closes the listeners and every open connection and returns
// once all goroutines have finished.
func (s *server) run(ctx context.Context, bs []binding) {
	for _, b := range bs {
		stop := context.AfterFunc(ctx, func() { b.ln.Close() })
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer stop()
			s.accept(ctx, b)
		}()
	}
	<-ctx.Done()
	for _, b := range bs {
		b.ln.Close()
	}
	s.wg.Wait()
}

// accept accepts connections on b until the listener is closed.
func (s *server) accept(ctx context.Context, b binding) {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient errors such as EMFILE: back off briefly, bounded by ctx.
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		select {
		case s.sem <- struct{}{}:
		default:
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-s.sem }()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			tc, ok := c.(*net.TCPConn)
			if !ok {
				return
			}
			s.handle(ctx, b.svc, tc)
		}()
	}
}

func (s *server) handle(ctx context.Context, svc service, c *net.TCPConn) {
	switch svc {
	case echoService:
		s.echo(c)
	case holdService:
		s.holdConn(ctx, c)
	case halfService:
		s.half(c)
	case httpService:
		s.http(c)
	}
}

// echo writes back everything it reads; after the peer's FIN it has echoed everything and returns, so the caller
// closes the connection.
func (s *server) echo(c *net.TCPConn) {
	buf := make([]byte, 32<<10)
	for {
		c.SetDeadline(time.Now().Add(s.idle))
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// holdConn discards what it reads; after the peer's FIN it keeps the socket open (CLOSE-WAIT) for s.hold.
func (s *server) holdConn(ctx context.Context, c *net.TCPConn) {
	if !s.drain(c) {
		return
	}
	t := time.NewTimer(s.hold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// half sends the banner and half-closes at once, so its FIN comes first, then reads until the peer's FIN.
func (s *server) half(c *net.TCPConn) {
	c.SetDeadline(time.Now().Add(s.idle))
	if _, err := io.WriteString(c, halfBanner); err != nil {
		return
	}
	if err := c.CloseWrite(); err != nil {
		return
	}
	s.drain(c)
}

// http reads one request head (bounded in time and size), answers it and returns, so the server closes first.
func (s *server) http(c *net.TCPConn) {
	c.SetDeadline(time.Now().Add(httpReadTimeout))
	var req []byte
	buf := make([]byte, 1024)
	for len(req) < httpMaxRequest && !bytes.Contains(req, []byte("\r\n\r\n")) {
		n, err := c.Read(buf)
		req = append(req, buf[:n]...)
		if err != nil {
			break
		}
	}
	c.SetDeadline(time.Now().Add(s.idle))
	io.WriteString(c, httpResponse())
}

// drain reads and discards until EOF and reports whether EOF (the peer's FIN) was seen.
func (s *server) drain(c *net.TCPConn) bool {
	buf := make([]byte, 32<<10)
	for {
		c.SetReadDeadline(time.Now().Add(s.idle))
		_, err := c.Read(buf)
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}
