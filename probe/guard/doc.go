// Package guard stops the local Linux kernel from resetting TCP connections
// that tcpshake plays from raw sockets, using an nftables table that vanishes
// with the process.
//
// # Why a guard is needed
//
// When tcpshake acts as a TCP client through raw sockets, the kernel has no
// socket for the 4-tuple. The peer's SYN-ACK (or any later segment) therefore
// reaches a port the kernel considers closed, and the kernel answers it with
// a RST of its own (RFC 9293, section 3.10.7.1: a segment for a CLOSED
// connection elicits a reset). The peer then tears the connection down before
// tcpshake can send its ACK. The guard drops exactly those kernel RSTs, and
// nothing else: each rule matches one 4-tuple, in one direction, and only
// segments with the RST flag set.
//
// # Mechanism
//
// [Open] opens one NETLINK_NETFILTER socket and keeps it for the life of the
// [Guard]. Over it, one nfnetlink batch (NFNL_MSG_BATCH_BEGIN ... END)
// creates:
//
//	table inet tcpshake_<pid>_<8 hex digits> {
//		flags owner
//		chain out {
//			type filter hook output priority -300; policy accept;
//		}
//	}
//
// [Guard.Block] appends one rule per guarded 4-tuple to chain "out":
//
//	meta nfproto ipv4 meta l4proto tcp ip saddr L ip daddr R
//	tcp sport LP tcp dport RP tcp flags & rst != 0 meta mark != Mark counter drop
//
// (ip6 saddr/daddr for IPv6). The rule's expressions are encoded with
// github.com/google/nftables/expr; the table, chain and rule messages are
// built here because google/nftables v0.3.0 always sends table flags 0 and so
// cannot create an owner table. The kernel echoes the new rule back, which
// gives its handle; [Guard.Unblock] deletes the rule by that handle and
// [Guard.Dropped] reads the rule's counter. The rule comment (shown by
// "nft list ruleset") names the tuple it guards.
//
// # Why the owner flag
//
// NFT_TABLE_F_OWNER ties the table to the netlink socket that created it.
// When that socket is closed, for whatever reason, the kernel deletes the
// table with all its chains and rules. A process killed with SIGKILL, or by
// SIGTERM or SIGINT that it does not handle, or crashing on a panic, closes
// its file descriptors on exit, so the table disappears at once and no stale
// firewall rule is left to break later connections on the same tuple. Nothing
// has to be swept by the next run. As a consequence, every later change (new
// rule, deleted rule) must come over the same socket: the kernel refuses
// changes to an owned table from any other socket with EPERM, which also
// protects the table from "nft flush ruleset" and from other tools.
//
// # Why priority -300
//
// The chain hooks output at priority -300 (NF_IP_PRI_RAW), before connection
// tracking (-200), mangle (-150), NAT and the usual filter chains (0). The
// kernel RST is dropped before conntrack sees it, so it cannot change the
// conntrack entry of the flow, and before any other rule can log, rewrite or
// accept it. Since our chain's policy is accept, every packet that our rules
// do not match continues unchanged to the chains after it.
//
// # Scope and limits
//
// The table lives in the network namespace of the thread that calls [Open];
// callers working in a lab namespace lock the OS thread and switch to the
// namespace first. The table name (see [TableName]) is the process id and 32
// random bits: processes with the same pid in different PID namespaces that
// share a network namespace get different tables, and so do two Guards of one
// process; [IsTable] recognises the names. Creating the
// table needs CAP_NET_ADMIN; without it errors satisfy
// errors.Is(err, os.ErrPermission). Only Linux is supported; elsewhere every
// function returns an error.
package guard
