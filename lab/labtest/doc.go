// Package labtest gives tests a running tcpshake lab: two network namespaces, a veth pair, the nftables rules and an
// in-process server, all removed when the test ends. It needs root on Linux.
package labtest
