package event

import "tcpshake/craft"

// Add counts one segment of a connection in the phase the teaching texts give it: a SYN, and the first bare ACK
// after the SYNs, to the handshake; a FIN, a RST, and a bare ACK that acknowledges a FIN (finAcked) to the close;
// everything else (data, and the ACKs of data) to the data. Retransmitted copies count: they crossed the wire.
// The sessions (probe) and analyze count with it, so both tell the same arithmetic.
func (c *SegmentCount) Add(seg *craft.Segment, finAcked bool) {
	f := seg.Flags
	bare := len(seg.Payload) == 0 && !f.Has(craft.SYN) && !f.Has(craft.FIN) && !f.Has(craft.RST)
	switch {
	case f.Has(craft.SYN):
		c.Handshake++
	case !c.synced && bare && f.Has(craft.ACK):
		c.synced = true
		c.Handshake++
	case f.Has(craft.FIN), f.Has(craft.RST), bare && finAcked:
		c.synced = true
		c.Close++
	default:
		c.synced = true
		c.Data++
	}
	c.Total++
}
