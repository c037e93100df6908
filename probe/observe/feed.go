package observe

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"tcpshake/craft"
	"tcpshake/event"
)

// A Drop is a segment the peer's kernel freed without delivering it, with
// the kernel's reason (skb:kfree_skb, see package trace).
type Drop struct {
	// At is the kernel's time of the drop.
	At       time.Time
	Src, Dst netip.AddrPort
	Flags    craft.Flags
	Seq, Ack uint32
	// Len is the segment's data bytes.
	Len int
	// Reason is enum skb_drop_reason's name without SKB_DROP_REASON_, e.g.
	// TCP_INVALID_SEQUENCE.
	Reason string
	Code   uint32
}

// A KernelWatcher is a [Watcher] fed by the kernel's own records (eBPF):
// besides its readings (those of state changes carry the kernel's time and
// Kernel set) it may report the segments the peer's kernel dropped.
type KernelWatcher interface {
	Watcher
	// Drops delivers the peer kernel's drops of segments sent to the
	// watched socket's 4-tuple; nil when drops are not watched.
	Drops() <-chan Drop
	// FeedSince is when the kernel's records began to flow (its programs
	// attached); zero while they do not (still loading, or failed). A
	// step before it has no record to wait for.
	FeedSince() time.Time
}

// dropState is the merger's part for drops: the records in hand, and
// whether they are watched at all.
type dropState struct {
	on   bool
	recs []Drop
	used []bool
}

// maxDrops bounds the drop records kept.
const maxDrops = 1 << 12

func (d *dropState) add(r Drop) {
	r.At = r.At.Round(0)
	d.recs = append(d.recs, r)
	d.used = append(d.used, false)
	if len(d.recs) > maxDrops {
		n := len(d.recs) - maxDrops
		d.recs, d.used = d.recs[n:], d.used[n:]
	}
}

// match finds the drop record of the segment of sent step st (sent at at):
// the same 4-tuple, flags, seq, ack and length, dropped no earlier than
// readingSkew before at and within wait after it, not claimed by an earlier
// step (a retransmission carries the same numbers). It marks it claimed.
func (d *dropState) match(st *event.Step, at time.Time, wait time.Duration) (Drop, bool) {
	for i, r := range d.recs {
		if d.used[i] || r.At.Before(at.Add(-readingSkew)) || r.At.After(at.Add(wait)) {
			continue
		}
		if r.Src.String() != st.Src || r.Dst.String() != st.Dst || r.Flags.String() != st.Flags ||
			r.Seq != st.Seq || r.Ack != st.Ack || r.Len != st.Len {
			continue
		}
		d.used[i] = true
		return r, true
	}
	return Drop{}, false
}

// prune forgets records older than from.
func (d *dropState) prune(from time.Time) {
	i := 0
	for i < len(d.recs) && d.recs[i].At.Before(from) {
		i++
	}
	if i > 0 {
		d.recs, d.used = d.recs[i:], d.used[i:]
	}
}

// DropMeaning says in words what a drop reason means for the segment, for
// the reasons a crafted segment meets (include/net/dropreason-core.h).
func DropMeaning(reason string) string {
	switch reason {
	case "TCP_INVALID_SEQUENCE", "TCP_OLD_SEQUENCE", "TCP_INVALID_END_SEQUENCE":
		return "its TCP found the sequence number outside the receive window and discarded the segment (RFC 9293 §3.10.7.4, first check)"
	case "TCP_RESET":
		return "its TCP took the segment as a reset it does not act on (not exactly RCV.NXT) and discarded it"
	case "TCP_OLD_DATA":
		return "its TCP had all of the segment's data already"
	case "TCP_ACK_UNSENT_DATA":
		return "its TCP found the ack beyond what it ever sent and discarded the segment"
	case "TCP_FLAGS":
		return "its TCP discarded the segment for its flags (a listener takes no RST; a stray ACK to a listener is answered with RST first)"
	case "TCP_INVALID_SYN":
		return "its TCP discarded a SYN on a synchronized connection (after its challenge ACK, if one was due)"
	case "TCP_RFC7323_PAWS":
		return "its TCP discarded the segment for an old timestamp (PAWS, RFC 7323 §5)"
	case "NO_SOCKET":
		return "its kernel has no socket for the 4-tuple (Linux answers such a segment with RST, then frees it)"
	case "NETFILTER_DROP":
		return "its firewall (netfilter) dropped it before its TCP saw it"
	case "NOT_SPECIFIED":
		return "freed without a specific reason (e.g. handled by a timewait or request socket)"
	}
	return "see enum skb_drop_reason in the kernel's include/net/dropreason-core.h"
}

// dropNote is the explanation a step gets for its drop record.
func dropNote(r Drop, at time.Time) string {
	return fmt.Sprintf("the peer's kernel dropped it: %s, %s after this step: %s", r.Reason, fmtDur(r.At.Sub(at)), DropMeaning(r.Reason))
}

// BeforeTCP reports whether a drop reason says the segment was dropped
// before the peer's TCP saw it: by its firewall, the IP layer, the device
// or a queue (include/net/dropreason-core.h). Any other reason (TCP_*,
// NO_SOCKET, and NOT_SPECIFIED, which request and timewait sockets free
// their segments with) may have been TCP's own.
func BeforeTCP(reason string) bool {
	switch reason {
	case "NETFILTER_DROP", "OTHERHOST", "PKT_TOO_SMALL", "DEV_READY", "DEV_HDR", "FULL_RING", "UNHANDLED_PROTO", "CPU_BACKLOG":
		return true
	}
	for _, p := range []string{"IP_", "IPV6", "TC_", "QDISC_", "NEIGH_", "XDP", "BPF_CGROUP", "FRAG_"} {
		if strings.HasPrefix(reason, p) {
			return true
		}
	}
	return false
}
