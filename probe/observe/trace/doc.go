// Package trace reports every TCP state change of the Linux kernel's sockets
// as it happens, with the kernel's own timestamps: eBPF programs (written
// with cilium/ebpf's asm package, so building needs no C compiler) on the
// tracepoint sock:inet_sock_set_state and on the few kernel functions that
// hand a closing socket to a timewait socket, end it, and keep a listener's
// request sockets, so TIME-WAIT and SYN-RECEIVED show as ss(8) shows them.
// With drops it also reports the kernel's reason for each TCP segment it
// dropped (skb:kfree_skb).
//
// Where eBPF cannot be loaded (no CAP_BPF and CAP_PERFMON, no BTF), [Poll]
// reads the socket table with sock_diag at an interval instead, and misses
// what lives shorter than that.
//
// It works on Linux only; elsewhere [Open] returns an error.
package trace
