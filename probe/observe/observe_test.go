package observe

import "testing"

func TestStateName(t *testing.T) {
	for _, tc := range []struct {
		linux uint8
		want  string
	}{
		{1, "ESTABLISHED"}, {2, "SYN-SENT"}, {3, "SYN-RECEIVED"}, {4, "FIN-WAIT-1"}, {5, "FIN-WAIT-2"},
		{6, "TIME-WAIT"}, {7, "CLOSED"}, {8, "CLOSE-WAIT"}, {9, "LAST-ACK"}, {10, "LISTEN"}, {11, "CLOSING"},
		{12, "SYN-RECEIVED"}, {0, "linux-state-0"}, {13, "linux-state-13"},
	} {
		if got := StateName(tc.linux); got != tc.want {
			t.Errorf("StateName(%d) = %q, want %q", tc.linux, got, tc.want)
		}
	}
}
