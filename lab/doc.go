// Package lab builds a two-host TCP lab out of Linux network namespaces and runs a small set of TCP services in it.
//
// A lab called NAME is a client namespace NAME-client and a server namespace NAME-server joined by a veth pair.
// The client has 198.51.100.1/24 and 2001:db8::1/64, the server 198.51.100.2/24 and 2001:db8::2/64. The veth pair
// is created directly inside the namespaces, so nothing appears in the root namespace and labs with different names
// never collide.
//
// # Services
//
// [Lab.Serve] opens IPv4 and IPv6 listeners inside the server namespace, one per service, each chosen to show a
// different part of the TCP life cycle:
//
//   - port 7 (echo) echoes everything and closes after the peer's FIN;
//   - port 9 (hold) discards, and after the peer's FIN keeps its socket in CLOSE-WAIT for [Lab.HoldAfterEOF];
//   - port 13 (half) sends one line and half-closes first, then reads until the peer's FIN;
//   - port 80 (http) answers one HTTP/1.0 request and closes first;
//   - port 81 (closed) has no listener, so the kernel answers a SYN with RST;
//   - port 82 (dropped) silently drops SYNs in nftables;
//   - port 83 (rejected) answers with ICMP port unreachable from nftables;
//   - port 84 (prohibited) answers with ICMP administratively prohibited from nftables;
//   - port 85 (v4only) echoes like port 7, but listens on 0.0.0.0 only: over IPv6 nothing listens there.
//
// All firewall rules live in the inet table "tcpshake_lab" of the server namespace; [Lab.SetLoss] adds random
// loss of incoming TCP segments there. [Lab.SetSynCookies] makes the server's kernel answer every SYN with a
// SYN cookie (net.ipv4.tcp_syncookies=2).
//
// # Peers
//
// [Lab.Peer] chooses the TCP stack that answers for the server's addresses. [PeerLinux] (the default) is the server
// namespace's kernel with the services above on its sockets. [PeerLWIP] is lwIP, an independent userspace TCP/IP
// stack (Debian's liblwip), in a small C program (package lab/lwip, built with the system's C compiler by
// [Lab.DaemonCommand]) attached to a TAP device that a bridge in the server namespace joins to the lab link; the
// server's kernel then holds no lab address and no socket, and the firewall rules move to a netdev table on the
// ingress of the server's veth end. [Lab.Status] tells which peer a lab runs. docs/peers.md tells what lwIP does
// differently from Linux.
//
// # Forger
//
// With [Lab.Forger] set, the client and the server are joined through a bridge in a third namespace,
// NAME-forger, instead of one veth pair (each keeps its veth0 and addresses). From there [Lab.Flood] puts
// unrelated TCP on the lab link and [Lab.Forge] sniffs a connection and sends the client forged segments on its
// 4-tuple, as hostile or stray traffic would arrive. Both are bounded in count and time.
//
// # Privileges
//
// Everything except [New] and [Status.String] needs CAP_NET_ADMIN (and CAP_SYS_ADMIN for the namespace bind
// mounts under /run/netns); in practice, run as root. The package works on Linux only; on other systems the
// methods return an error.
package lab
