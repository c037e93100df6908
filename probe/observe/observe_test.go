package observe

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"tcpshake/event"
	"tcpshake/probe/tcpstate"
)

func TestFromLinux(t *testing.T) {
	for _, tc := range []struct {
		linux   uint8
		want    tcpstate.State
		request bool
		name    string
	}{
		{1, tcpstate.Established, false, "ESTABLISHED"}, {2, tcpstate.SynSent, false, "SYN-SENT"},
		{3, tcpstate.SynReceived, false, "SYN-RECEIVED"}, {4, tcpstate.FinWait1, false, "FIN-WAIT-1"},
		{5, tcpstate.FinWait2, false, "FIN-WAIT-2"}, {6, tcpstate.TimeWait, false, "TIME-WAIT"},
		{7, tcpstate.Closed, false, "CLOSED"}, {8, tcpstate.CloseWait, false, "CLOSE-WAIT"},
		{9, tcpstate.LastAck, false, "LAST-ACK"}, {10, tcpstate.Listen, false, "LISTEN"},
		{11, tcpstate.Closing, false, "CLOSING"}, {12, tcpstate.SynReceived, true, "SYN-RECEIVED"},
	} {
		r := FromLinux(tc.linux, time.Time{})
		if r.Err != nil || !r.Exists || r.State != tc.want || r.Request != tc.request || r.Linux != tc.linux {
			t.Errorf("FromLinux(%d) = %+v, want %v request=%v", tc.linux, r, tc.want, tc.request)
		}
		if got := StateName(tc.linux); got != tc.name {
			t.Errorf("StateName(%d) = %q, want %q", tc.linux, got, tc.name)
		}
	}
	for _, bad := range []uint8{0, 13, 255} {
		if r := FromLinux(bad, time.Time{}); r.Err == nil {
			t.Errorf("FromLinux(%d) = %+v, want an error", bad, r)
		}
		if got, want := StateName(bad), fmt.Sprintf("linux-state-%d", bad); got != want {
			t.Errorf("StateName(%d) = %q, want %q", bad, got, want)
		}
	}
}

func TestAgree(t *testing.T) {
	est := Reading{Exists: true, State: tcpstate.Established}
	none := Reading{}
	for _, tc := range []struct {
		inferred tcpstate.State
		r        Reading
		want     event.Agreement
	}{
		{tcpstate.Established, est, event.Agrees},
		{tcpstate.Closed, none, event.Agrees},
		{tcpstate.SynReceived, none, event.Differs}, // the SYN has not arrived (or a cookie: the Merger's call)
		{tcpstate.Listen, none, event.Agrees},       // no connection socket yet: the listener is another socket
		{tcpstate.TimeWait, none, event.Ahead},
		{tcpstate.Established, none, event.Ahead},
		{tcpstate.Established, Reading{Exists: true, State: tcpstate.FinWait1}, event.Ahead},
		{tcpstate.SynReceived, Reading{Exists: true, State: tcpstate.FinWait1}, event.Ahead},
		{tcpstate.CloseWait, Reading{Exists: true, State: tcpstate.LastAck}, event.Ahead},
		{tcpstate.Established, Reading{Exists: true, State: tcpstate.SynReceived, Request: true}, event.Differs},
		{tcpstate.FinWait1, est, event.Differs},
		{tcpstate.Established, Reading{Err: errors.New("x")}, event.Unknown},
	} {
		if got := Agree(tc.inferred, tc.r); got != tc.want {
			t.Errorf("Agree(%v, %v) = %v, want %v", tc.inferred, tc.r, got, tc.want)
		}
	}
}

func TestParseState(t *testing.T) {
	for s := tcpstate.Closed; s <= tcpstate.TimeWait; s++ {
		if got, ok := parseState(s.String()); !ok || got != s {
			t.Errorf("parseState(%q) = %v, %v", s.String(), got, ok)
		}
	}
	if _, ok := parseState("linux-state-13"); ok {
		t.Error("parseState accepted linux-state-13")
	}
}
