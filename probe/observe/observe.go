// Package observe reads a TCP socket's real state from the Linux kernel with
// sock_diag (NETLINK_INET_DIAG), in this network namespace or in a named one,
// so tcpshake can show the peer's state beside the one it infers.
package observe

import "fmt"

// linuxStates maps the kernel's TCP state numbers (include/net/tcp_states.h)
// to RFC 9293's names. TCP_NEW_SYN_RECV (12) is a request socket waiting for
// the final ACK: SYN-RECEIVED.
var linuxStates = [...]string{
	1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECEIVED", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
	6: "TIME-WAIT", 7: "CLOSED", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING",
	12: "SYN-RECEIVED",
}

// StateName returns RFC 9293's name for a Linux TCP state number.
func StateName(linux uint8) string {
	if int(linux) < len(linuxStates) && linuxStates[linux] != "" {
		return linuxStates[linux]
	}
	return fmt.Sprintf("linux-state-%d", linux)
}

// None is reported when the kernel has no socket for the 4-tuple: for the
// peer of a connection, CLOSED.
const None = "CLOSED"
