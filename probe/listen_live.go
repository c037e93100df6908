package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"tcpshake/capture"
	"tcpshake/probe/guard"
)

// ListenLive is the real world a listener talks to: one packet capture (on
// one interface, or all of them) read through the listener's Source, and a
// raw sender per address family.
type ListenLive struct {
	Matcher *capture.Matcher
	Sender  capture.Sender
	source  *capture.PacketSource
	senders []*capture.RawSender
	cancel  context.CancelFunc
	done    chan error
}

// OpenListenLive opens the sockets for l: a packet capture on interface
// ifindex (0: every interface) that sees every TCP segment, and raw senders
// for the families local allows (an invalid or unspecified address: both).
// bindIface is -I (empty: the routing table decides).
func OpenListenLive(l *Listener, local netip.Addr, ifindex int, bindIface string) (*ListenLive, error) {
	src, err := capture.OpenPacketSource(ifindex, netip.Addr{})
	if err != nil {
		return nil, liveErr(err)
	}
	ll := &ListenLive{source: src}
	both := !local.IsValid() || local.IsUnspecified()
	var mux familySender
	for _, v6 := range []bool{false, true} {
		if !both && local.Unmap().Is6() != v6 {
			continue
		}
		snd, err := capture.OpenRawSender(v6, bindIface, guard.Mark)
		if err != nil {
			ll.closeSockets()
			return nil, liveErr(err)
		}
		ll.senders = append(ll.senders, snd)
		if v6 {
			mux.v6 = snd
		} else {
			mux.v4 = snd
		}
	}
	ll.Sender = mux
	ctx, cancel := context.WithCancel(context.Background())
	ll.Matcher, ll.cancel, ll.done = capture.NewMatcher(), cancel, make(chan error, 1)
	go func() { ll.done <- ll.Matcher.Run(ctx, l.Source(src)) }()
	return ll, nil
}

// Env returns the environment for the listener's sessions.
func (ll *ListenLive) Env() Env {
	return Env{Sender: ll.Sender, Matcher: ll.Matcher, Now: time.Now, Rand: CryptoRand}
}

// Close stops the capture and closes the sockets.
func (ll *ListenLive) Close() error {
	ll.cancel()
	err := <-ll.done
	return errors.Join(err, ll.closeSockets())
}

func (ll *ListenLive) closeSockets() error {
	errs := []error{ll.source.Close()}
	for _, s := range ll.senders {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// familySender sends each packet on the raw socket of its family.
type familySender struct{ v4, v6 capture.Sender }

func (f familySender) Send(pkt []byte, dst netip.Addr) error {
	s := f.v4
	if dst.Unmap().Is6() {
		s = f.v6
	}
	if s == nil {
		return fmt.Errorf("listen: no raw socket for %v (the listening address is of the other family)", dst)
	}
	return s.Send(pkt, dst)
}

func (f familySender) Close() error { return nil }
