package app

import (
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"tcpshake/probe"
)

// parseSession runs the session flags over args and returns what
// sessionConfig made of them.
func parseSession(t *testing.T, args ...string) (probe.SessionConfig, error) {
	t.Helper()
	var cfg probe.SessionConfig
	var err error
	a := &cli.App{
		Name:  "t",
		Flags: sessionFlags(),
		Action: func(c *cli.Context) error {
			cfg, _, err = sessionConfig(c, target{host: "peer"})
			return nil
		},
	}
	if rerr := a.Run(append([]string{"t"}, args...)); rerr != nil {
		t.Fatalf("parse %q: %v", args, rerr)
	}
	return cfg, err
}

// TestSessionConfigTimeWait: --time-wait 0 means "skip TIME-WAIT"
// (probe.NoTimeWait), a negative one is refused, and other durations keep
// refusing 0.
func TestSessionConfigTimeWait(t *testing.T) {
	tests := []struct {
		args    []string
		want    time.Duration
		wantErr string
	}{
		{nil, 2 * time.Second, ""},
		{[]string{"--time-wait", "0"}, probe.NoTimeWait, ""},
		{[]string{"--time-wait", "0s"}, probe.NoTimeWait, ""},
		{[]string{"--time-wait", "250ms"}, 250 * time.Millisecond, ""},
		{[]string{"--time-wait", "-1s"}, 0, "--time-wait -1s: must not be negative"},
		{[]string{"--time-wait", "soon"}, 0, "--time-wait soon: want a duration"},
		{[]string{"--rto", "0"}, 0, "--rto 0: must be more than zero"},
		{[]string{"--timeout", "0"}, 0, "--timeout 0: must be more than zero"},
	}
	for _, tt := range tests {
		cfg, err := parseSession(t, tt.args...)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: err = %v, want %q", tt.args, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("%q: %v", tt.args, err)
		case cfg.TimeWait != tt.want:
			t.Errorf("%q: TimeWait = %v, want %v", tt.args, cfg.TimeWait, tt.want)
		}
	}
}

// TestSessionConfigMSS: without --mss the config carries no MSS yet (the
// route decides it in openWorld); an explicit value, 0 included, is kept.
func TestSessionConfigMSS(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want uint16
	}{
		{nil, 0},
		{[]string{"--mss", "1300"}, 1300},
		{[]string{"--mss", "0"}, 0},
	} {
		cfg, err := parseSession(t, tt.args...)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if cfg.SYN.MSS != tt.want {
			t.Errorf("%q: MSS %d, want %d", tt.args, cfg.SYN.MSS, tt.want)
		}
	}
}
