//go:build linux

package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tcpshake/lab/labtest"
)

// TestShellListenSVGLab: shell --listen --svg draws the server's side: our
// lifeline (the server's, on the left, where our steps start) is named us
// (server), the client's peer (client), our states (LISTEN, SYN-RECEIVED)
// are beside ours and the client's (SYN-SENT) beside its, and every segment
// is there.
func TestShellListenSVGLab(t *testing.T) {
	l := labtest.New(t)
	port := fmt.Sprint(listenPort())
	pic := filepath.Join(t.TempDir(), "listen.svg")
	script := "synack\nexpect . ack=+1\nexpect P. seq=+1 len=6\nsend hi\\n\nfin\nquit\n"
	srv := startServer(t, l, script, "shell", "--listen", port, "--time-wait", "0", "--timeout", "3s", "--view", "list", "--svg", pic)
	if _, err := dialClient(t, l, port, false); err != nil {
		t.Logf("client: %v", err)
	}
	if code := srv.wait(t); code != 0 {
		t.Fatalf("shell --listen --svg: status %d\n%s%s", code, srv.stdout.String(), srv.stderr.String())
	}
	text := svgText(t, pic)
	for _, s := range []string{"us (server) " + l.ServerV4.String() + ":" + port, "peer (client) " + l.ClientV4.String(),
		"[S] SYN", "[S.] SYN, ACK", "[P.] PSH, ACK", "[F.] FIN, ACK", "LISTEN", "SYN-RECEIVED", "SYN-SENT", "ESTABLISHED"} {
		if !strings.Contains(text, s) {
			t.Errorf("the picture has no %q:\n%s", s, text)
		}
	}
	// States sit beside their own lifeline: ours end at x=250 (left), the
	// client's start at x=870 (right).
	raw := svgRaw(t, pic)
	for _, c := range []struct{ state, x string }{{"LISTEN", `x="250"`}, {"SYN-RECEIVED", `x="250"`}, {"SYN-SENT", `x="870"`}} {
		if !strings.Contains(raw, c.x+` y=`) || !stateAt(raw, c.state, c.x) {
			t.Errorf("%s is not drawn at %s (beside its end's lifeline)", c.state, c.x)
		}
	}
}

// stateAt reports whether a state label is drawn at x.
func stateAt(raw, state, x string) bool {
	for _, line := range strings.Split(raw, "\n") {
		if strings.Contains(line, `class="state">`+state+`<`) && strings.Contains(line, x) {
			return true
		}
	}
	return false
}

// svgRaw is an SVG file's bytes as text.
func svgRaw(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
