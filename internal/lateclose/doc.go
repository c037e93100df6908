// Package lateclose hands a file descriptor's last reference to the
// kernel's garbage collector of Unix sockets, so that closing it does not
// wait.
//
// Closing a packet socket waits for an RCU grace period (packet_release
// calls synchronize_net), and so does closing the netlink socket that owned
// an nf_tables table (the release flushes the table's destruction, which
// waits for one): 6-24 ms each on the machines measured, most of what a
// short tcpshake run took after its last packet. [Handoff] puts a duplicate
// of the descriptor, with the socket that carries it, in that socket's own
// receive queue: once both ends are closed nothing in user space reaches
// them, and the kernel's Unix garbage collector (a workqueue since Linux
// 6.10) releases them later, grace period and all, while the caller's own
// close of the descriptor returns at once. On older kernels the collector
// runs inside the last close and nothing is gained, nor lost.
package lateclose
