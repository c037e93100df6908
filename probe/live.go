package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"tcpshake/capture"
	"tcpshake/probe/guard"
)

// ErrNeedRaw is wrapped by OpenLive when the process may not open raw or
// packet sockets.
var ErrNeedRaw = errors.New("needs CAP_NET_RAW to send and capture raw packets")

// Live is the real world a run talks to: a raw sender and a packet capture on
// the interface the route to the peer uses, with a matcher reading it.
type Live struct {
	Route   capture.Route
	Sender  *capture.RawSender
	Source  *capture.PacketSource
	Matcher *capture.Matcher
	cancel  context.CancelFunc
	done    chan error
	peer    netip.Addr
	gso     *capture.GSOSender
}

// OpenLive opens the sockets for talking to peer along route and starts the
// capture goroutine. Close it when done.
func OpenLive(peer netip.Addr, route capture.Route, bindIface string) (*Live, error) {
	src, err := capture.OpenPacketSource(route.IfIndex, peer)
	if err != nil {
		return nil, liveErr(err)
	}
	snd, err := capture.OpenRawSender(peer.Is6(), bindIface, guard.Mark)
	if err != nil {
		src.Close()
		return nil, liveErr(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Live{Route: route, Sender: snd, Source: src, Matcher: capture.NewMatcher(), cancel: cancel, done: make(chan error, 1), peer: peer}
	go func() { l.done <- l.Matcher.Run(ctx, src) }()
	return l, nil
}

func liveErr(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w: %w", ErrNeedRaw, err)
	}
	return err
}

// Env returns the environment for a run on this connection to the world.
func (l *Live) Env() Env {
	return Env{Sender: l.Sender, Matcher: l.Matcher, Now: time.Now, Rand: CryptoRand}
}

// GSO opens the sender of large segments on the route's interface (for
// SessionEnv.GSO); Close closes it.
func (l *Live) GSO() (Segmenter, error) {
	if l.gso == nil {
		g, err := capture.OpenGSOSender(l.peer, l.Route.IfIndex)
		if err != nil {
			return nil, err
		}
		l.gso = g
	}
	return l.gso, nil
}

// Close stops the capture and closes the sockets.
func (l *Live) Close() error {
	l.cancel()
	err := <-l.done
	if l.gso != nil {
		err = errors.Join(err, l.gso.Close())
	}
	return errors.Join(err, l.Source.Close(), l.Sender.Close())
}

// CryptoRand returns 32 random bits from crypto/rand: ISNs must not be
// predictable (RFC 9293 §3.4.1, RFC 6528).
func CryptoRand() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}
