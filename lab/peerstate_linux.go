package lab

import (
	"fmt"
	"io"
	"net"
	"time"
)

// lwipStateSocket is the abstract UNIX socket in the server namespace where the lwip peer tells its pcbs
// (lab/lwip/csrc/peer.c, state_server).
const lwipStateSocket = "@tcpshake-lwip-state"

// LWIPSockets reads the lwip peer's TCP sockets (its pcbs: listeners, connections, TIME-WAIT) from the program
// itself: its sockets live in userspace, where sock_diag and ss cannot see them. An error when the lab is not
// served by the lwip peer.
func (l Lab) LWIPSockets() ([]PeerSocket, error) {
	var text []byte
	err := inNS(l.ServerNS, func() error {
		c, err := net.DialTimeout("unix", lwipStateSocket, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
			return err
		}
		text, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: read the lwip peer's sockets (%s in %s): %w", lwipStateSocket, l.ServerNS, err)
	}
	return parseLWIPSockets(string(text))
}
