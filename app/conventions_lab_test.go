//go:build linux

package app_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"tcpshake/lab/labtest"
)

// TestLabUpUnprivileged checks what `lab up` says to a user without root:
// with CAP_NET_RAW and CAP_NET_ADMIN only (the probe's advice) it names
// what is missing, and the capabilities it names are enough: the same user
// with exactly those brings the lab up.
func TestLabUpUnprivileged(t *testing.T) {
	labtest.RequireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatal("setpriv (util-linux) is not installed; scripts/test.sh installs it")
	}
	bin := binary(t)
	name := labtest.Name(t)
	t.Cleanup(func() {
		if out, err := exec.Command(bin, "lab", "down", "--name", name).CombinedOutput(); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
	})
	run := func(caps string, args ...string) (int, string, string) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		argv := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=-all," + caps, "--ambient-caps=-all," + caps, bin}, args...)
		cmd := exec.CommandContext(ctx, "setpriv", argv...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("setpriv: %v", err)
		}
		return code, out.String(), errb.String()
	}

	code, out, errb := run("+net_raw,+net_admin", "lab", "up", "--name", name)
	if code != 2 || out != "" {
		t.Errorf("with CAP_NET_RAW and CAP_NET_ADMIN: exit %d, stdout %q", code, out)
	}
	oneLine(t, errb, "lab up", "CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE", "CAP_NET_BIND_SERVICE", "as good as root",
		"sudo setcap cap_net_raw,cap_net_admin,cap_sys_admin,cap_dac_override,cap_net_bind_service+ep")

	code, out, errb = run("+net_raw,+net_admin,+sys_admin,+dac_override,+net_bind_service", "lab", "up", "--name", name)
	if code != 0 {
		t.Fatalf("with the capabilities named: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errb)
	}
	code, out, errb = run("+net_raw,+net_admin,+sys_admin,+dac_override,+net_bind_service", "lab", "status", "--name", name)
	if code != 0 || !strings.Contains(out, "namespaces: client ok, server ok") || !strings.Contains(out, "daemon:     running") {
		t.Errorf("lab status with the capabilities named: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errb)
	}
}
