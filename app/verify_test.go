package app_test

import (
	"testing"

	"tcpshake/app"
)

// TestVerifyBadInput: the verify flags' mistakes give exit status 2 and one
// line, before any socket is opened (every target is loopback besides).
func TestVerifyBadInput(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"wait without verify", []string{"probe", "127.0.0.1", "-p", "80", "--verify-wait", "1s"}, "--verify-wait goes with --verify"},
		{"max without verify", []string{"probe", "127.0.0.1", "-p", "80", "--verify-max", "3"}, "--verify-max goes with --verify"},
		{"verify a FIN probe", []string{"probe", "127.0.0.1", "-p", "80", "--flags", "F", "--verify"}, "SYN probes only"},
		{"bad hello escape", []string{"probe", "127.0.0.1", "-p", "80", "--hello", `\q`}, "--hello"},
		{"max 0", []string{"probe", "127.0.0.1", "-p", "80", "--verify", "--verify-max", "0"}, "--verify-max 0"},
		{"wait abc", []string{"probe", "127.0.0.1", "-p", "80", "--verify", "--verify-wait", "abc"}, "--verify-wait abc"},
		{"scan, max 0", []string{"probe", "127.0.0.1", "127.0.0.2", "-p", "80", "--verify", "--verify-max", "0"}, "--verify-max 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := mainRun(t, tt.args...)
			if code != app.ExitFailure {
				t.Errorf("exit status %d, want %d", code, app.ExitFailure)
			}
			checkOneLine(t, stderr, tt.want)
			if stdout != "" {
				t.Errorf("stdout not empty:\n%s", stdout)
			}
		})
	}
}
