package lab

import (
	"bufio"
	"fmt"
	"strings"
)

// PeerSocket is one TCP socket of the lab's server, as `ss -tan` shows a kernel's: its state in RFC 9293's
// words (LISTEN, SYN-RECEIVED, ESTABLISHED, …, TIME-WAIT), its local and remote address:port (remote "*" for a
// listener).
type PeerSocket struct {
	State, Local, Remote string
}

// lwipStates maps lwIP's state names (tcp_debug_state_str) to RFC 9293's.
var lwipStates = map[string]string{
	"CLOSED": "CLOSED", "LISTEN": "LISTEN", "SYN_SENT": "SYN-SENT", "SYN_RCVD": "SYN-RECEIVED",
	"ESTABLISHED": "ESTABLISHED", "FIN_WAIT_1": "FIN-WAIT-1", "FIN_WAIT_2": "FIN-WAIT-2", "CLOSE_WAIT": "CLOSE-WAIT",
	"CLOSING": "CLOSING", "LAST_ACK": "LAST-ACK", "TIME_WAIT": "TIME-WAIT",
}

func parseLWIPSockets(text string) ([]PeerSocket, error) {
	var out []PeerSocket
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			return nil, fmt.Errorf("lab: the lwip peer's socket line %q: want STATE LOCAL REMOTE", sc.Text())
		}
		st, ok := lwipStates[f[0]]
		if !ok {
			return nil, fmt.Errorf("lab: the lwip peer's socket line %q: unknown state %s", sc.Text(), f[0])
		}
		out = append(out, PeerSocket{State: st, Local: f[1], Remote: f[2]})
	}
	return out, sc.Err()
}
