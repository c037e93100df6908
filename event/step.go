package event

import (
	"time"

	"tcpshake/craft"
)

// DirectionObserved is the Direction of a Step that no segment caused: the
// peer's kernel, read with sock_diag, moved on its own (a TIME-WAIT ended, a
// socket appeared or went away) with no step of ours near it. Such a step has
// N 0, no segment fields, Observed set and Local/Remote copied from the step
// before it.
const DirectionObserved = "observed"

// An Agreement is how the peer's state read from its kernel compares with the
// state inferred from the segments (Step.Remote). It is decided once per step
// by the observer (package probe/observe) and carried typed, so no renderer
// compares state names.
type Agreement string

// The agreements. The empty Agreement means the step was not observed.
const (
	// Agrees: the kernel is in the inferred state.
	Agrees Agreement = "agrees"
	// Ahead: the kernel has moved on by itself from the inferred state (its
	// application closed, it aborted, a TIME-WAIT ended); the segment that
	// tells us is on its way or will never come.
	Ahead Agreement = "ahead"
	// Differs: within the observation window the kernel never showed the
	// inferred state or one ahead of it; Explain says what it showed.
	Differs Agreement = "differs"
	// Cookie: the peer answered our SYN with a SYN cookie (RFC 4987 §3.6):
	// its kernel keeps no socket, not even a request socket, until our final
	// ACK. Nothing was lost.
	Cookie Agreement = "cookie"
	// Unknown: the kernel could not be read within the window (an error, or
	// no reading was taken); nothing is claimed either way.
	Unknown Agreement = "unknown"
)

// Agreements lists every non-empty Agreement, for schemas and tests.
func Agreements() []Agreement { return []Agreement{Agrees, Ahead, Differs, Cookie, Unknown} }

// StepOf describes one segment as a step event (absolute numbers; relative
// numbers, states and explanations are the caller's to add). since is the
// time from the start of the run.
func StepOf(n int, since time.Duration, dir string, seg *craft.Segment) Step {
	return Step{
		N: n, TimeMs: float64(since.Nanoseconds()) / 1e6, Direction: dir,
		Src: seg.Src.String(), Dst: seg.Dst.String(),
		Flags: seg.Flags.String(), FlagNames: trimBrackets(seg.Flags.Wireshark()),
		Seq: uint32(seg.Seq), Ack: uint32(seg.Ack), Len: len(seg.Payload), Window: seg.Window,
		TTL: seg.TTL, Options: seg.Options.String(),
	}
}

func trimBrackets(s string) string {
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		return s[1 : len(s)-1]
	}
	return s
}
