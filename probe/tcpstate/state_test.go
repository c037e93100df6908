package tcpstate_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tcpshake/craft"
	"tcpshake/probe/tcpstate"
)

// One end's ISS is 100, the other's 2000, as in the teaching texts.
const (
	iss craft.Seq = 100
	irs craft.Seq = 2000
)

// op is one thing that happens to an endpoint: a segment sent ('>'),
// received ('<'), or the 2·MSL timer ('t').
type op struct {
	dir   byte
	flags craft.Flags
	seq   craft.Seq
	ack   craft.Seq
	data  string
}

func send(f craft.Flags, seq, ack craft.Seq) op { return op{dir: '>', flags: f, seq: seq, ack: ack} }
func recv(f craft.Flags, seq, ack craft.Seq) op { return op{dir: '<', flags: f, seq: seq, ack: ack} }
func recvData(seq, ack craft.Seq, data string) op {
	return op{dir: '<', flags: craft.PSH | craft.ACK, seq: seq, ack: ack, data: data}
}
func expire() op { return op{dir: 't'} }

const (
	syn    = craft.SYN
	synAck = craft.SYN | craft.ACK
	ack    = craft.ACK
	finAck = craft.FIN | craft.ACK
	rst    = craft.RST
	rstAck = craft.RST | craft.ACK
)

// established is the active opener after a three-way handshake.
func established() []op {
	return []op{send(syn, iss, 0), recv(synAck, irs, iss+1), send(ack, iss+1, irs+1)}
}

func TestTransitions(t *testing.T) {
	active, listener := tcpstate.NewActive, tcpstate.NewListener
	tests := []struct {
		name  string
		start func() *tcpstate.Endpoint
		ops   []op
		want  []tcpstate.State // the state after each op
		why   string           // the last transition's reason contains this
	}{
		{
			name: "active open", start: active, ops: established(),
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Established, tcpstate.Established},
			why:  "received SYN-ACK acknowledging our SYN",
		},
		{
			name: "passive open", start: listener,
			ops:  []op{recv(syn, irs, 0), send(synAck, iss, irs+1), recv(ack, irs+1, iss+1)},
			want: []tcpstate.State{tcpstate.SynReceived, tcpstate.SynReceived, tcpstate.Established},
			why:  "received the ACK of our SYN",
		},
		{
			name: "simultaneous open", start: active,
			ops:  []op{send(syn, iss, 0), recv(syn, irs, 0), send(synAck, iss, irs+1), recv(synAck, irs, iss+1)},
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.SynReceived, tcpstate.SynReceived, tcpstate.Established},
			why:  "simultaneous open complete",
		},
		{
			name: "SYN-ACK with a wrong ack is not accepted", start: active,
			ops:  []op{send(syn, iss, 0), recv(synAck, irs, iss+5), recv(synAck, irs, iss+1)},
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.SynSent, tcpstate.Established},
		},
		{
			name: "active close", start: active,
			ops: append(established(), send(finAck, iss+1, irs+1), recv(ack, irs+1, iss+2),
				recv(finAck, irs+1, iss+2), send(ack, iss+2, irs+2), expire()),
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Established, tcpstate.Established,
				tcpstate.FinWait1, tcpstate.FinWait2, tcpstate.TimeWait, tcpstate.TimeWait, tcpstate.Closed},
			why: "2·MSL passed",
		},
		{
			name: "active close answered by FIN-ACK", start: active,
			ops:  append(established(), send(finAck, iss+1, irs+1), recv(finAck, irs+1, iss+2)),
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Established, tcpstate.Established, tcpstate.FinWait1, tcpstate.TimeWait},
			why:  "received FIN: wait 2·MSL",
		},
		{
			name: "passive close", start: active,
			ops: append(established(), recv(finAck, irs+1, iss+1), send(ack, iss+1, irs+2),
				send(finAck, iss+1, irs+2), recv(ack, irs+2, iss+2)),
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Established, tcpstate.Established,
				tcpstate.CloseWait, tcpstate.CloseWait, tcpstate.LastAck, tcpstate.Closed},
			why: "received the ACK of our FIN: connection closed",
		},
		{
			name: "simultaneous close", start: active,
			ops: append(established(), send(finAck, iss+1, irs+1), recv(finAck, irs+1, iss+1),
				send(ack, iss+2, irs+2), recv(ack, irs+2, iss+2), expire()),
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Established, tcpstate.Established,
				tcpstate.FinWait1, tcpstate.Closing, tcpstate.Closing, tcpstate.TimeWait, tcpstate.Closed},
			why: "2·MSL passed",
		},
		{
			name: "FIN from SYN-RECEIVED", start: listener,
			ops:  []op{recv(syn, irs, 0), send(synAck, iss, irs+1), send(finAck, iss+1, irs+1), recv(ack, irs+1, iss+2)},
			want: []tcpstate.State{tcpstate.SynReceived, tcpstate.SynReceived, tcpstate.FinWait1, tcpstate.FinWait2},
			why:  "received the ACK of our FIN",
		},
		{
			name: "refused: RST acknowledging our SYN", start: active,
			ops:  []op{send(syn, iss, 0), recv(rstAck, 0, iss+1)},
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Closed},
			why:  "connection refused",
		},
		{
			name: "RST without ACK in SYN-SENT is ignored", start: active,
			ops:  []op{send(syn, iss, 0), recv(rst, irs, 0)},
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.SynSent},
		},
		{
			name: "RST in SYN-RECEIVED returns a listener to LISTEN", start: listener,
			ops:  []op{recv(syn, irs, 0), send(synAck, iss, irs+1), recv(rst, irs+1, 0)},
			want: []tcpstate.State{tcpstate.SynReceived, tcpstate.SynReceived, tcpstate.Listen},
			why:  "back to LISTEN",
		},
		{
			name: "RST in SYN-RECEIVED after a simultaneous open closes", start: active,
			ops:  []op{send(syn, iss, 0), recv(syn, irs, 0), recv(rst, irs+1, 0)},
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.SynReceived, tcpstate.Closed},
			why:  "aborted",
		},
		{
			name: "exact RST aborts an established connection", start: active,
			ops:  append(established(), recv(rst, irs+1, 0)),
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Established, tcpstate.Established, tcpstate.Closed},
			why:  "aborted",
		},
		{
			name: "in-window RST that is not exact is ignored", start: active,
			ops: append(established(), recv(rst, irs+10, 0), recv(rst, irs-10, 0)),
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Established, tcpstate.Established,
				tcpstate.Established, tcpstate.Established},
		},
		{
			name: "sending RST aborts", start: active,
			ops:  append(established(), send(rstAck, iss+1, irs+1)),
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Established, tcpstate.Established, tcpstate.Closed},
			why:  "sent RST",
		},
		{
			name: "SYN in a synchronized state changes nothing", start: active,
			ops:  append(established(), recv(syn, irs+50, 0)),
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Established, tcpstate.Established, tcpstate.Established},
		},
		{
			name: "a FIN after a gap waits for the data before it", start: active,
			ops: append(established(), recv(finAck, irs+4, iss+1), recvData(irs+1, iss+1, "abc")),
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Established, tcpstate.Established,
				tcpstate.Established, tcpstate.CloseWait},
			why: "received FIN",
		},
		{
			name: "TIME-WAIT expiry elsewhere changes nothing", start: active,
			ops:  append(established(), expire()),
			want: []tcpstate.State{tcpstate.SynSent, tcpstate.Established, tcpstate.Established, tcpstate.Established},
		},
		{
			name: "LISTEN ignores ACK and RST", start: listener,
			ops:  []op{recv(ack, irs, iss), recv(rst, irs, 0)},
			want: []tcpstate.State{tcpstate.Listen, tcpstate.Listen},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.start()
			var got []tcpstate.State
			var last tcpstate.Change
			for _, o := range tt.ops {
				seg := craft.Segment{Flags: o.flags, Seq: o.seq, Ack: o.ack, Payload: []byte(o.data)}
				var c tcpstate.Change
				switch o.dir {
				case '>':
					c = e.Send(&seg)
				case '<':
					c = e.Receive(&seg)
				default:
					c = e.Expire()
				}
				if c.To != e.State {
					t.Errorf("change to %v, but the endpoint is in %v", c.To, e.State)
				}
				if c.Changed() {
					last = c
				}
				got = append(got, e.State)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("states (-want +got):\n%s", diff)
			}
			if !strings.Contains(last.Why, tt.why) {
				t.Errorf("last transition %v: reason does not contain %q", last, tt.why)
			}
		})
	}
}

func TestSequenceVariables(t *testing.T) {
	e := tcpstate.NewActive()
	for _, o := range append(established(), recvData(irs+1, iss+1, "hello\n"), send(finAck, iss+1, irs+7)) {
		seg := craft.Segment{Flags: o.flags, Seq: o.seq, Ack: o.ack, Payload: []byte(o.data)}
		if o.dir == '>' {
			e.Send(&seg)
		} else {
			e.Receive(&seg)
		}
	}
	got := []craft.Seq{e.ISS, e.SndUna, e.SndNxt, e.IRS, e.RcvNxt, e.FinSeq}
	want := []craft.Seq{iss, iss + 1, iss + 2, irs, irs + 7, iss + 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("[ISS SND.UNA SND.NXT IRS RCV.NXT FIN] (-want +got):\n%s", diff)
	}
}

func TestStateNames(t *testing.T) {
	want := []string{"CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
		"CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT", "State(11)"}
	var got []string
	for s := tcpstate.Closed; s <= tcpstate.TimeWait+1; s++ {
		got = append(got, s.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
}
