package observe

import "net/netip"

// A Socket is one TCP socket of a [Diag.Sockets] dump.
type Socket struct {
	// Local and Remote are its ends as its owner sees them (IPv4 unmapped).
	Local, Remote netip.AddrPort
	// Linux is the kernel's state number (include/net/tcp_states.h); a
	// request socket is reported as 3 (TCP_SYN_RECV) with Request set.
	Linux   uint8
	Request bool
}

// LinuxStates is a state mask for [Diag.Sockets]: the bit 1<<n for each
// Linux state number n given.
func LinuxStates(states ...uint8) uint32 {
	var m uint32
	for _, s := range states {
		m |= 1 << s
	}
	return m
}

// AllStates selects every state in [Diag.Sockets], request sockets too.
const AllStates = 0xffffffff
