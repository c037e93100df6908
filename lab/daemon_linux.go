package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bounds of the daemon's start and stop.
const (
	daemonStartTimeout = 3 * time.Second
	daemonTermTimeout  = 3 * time.Second
	daemonKillTimeout  = time.Second
	daemonPoll         = 25 * time.Millisecond
)

// StartDaemon starts argv (for example /proc/self/exe lab serve --name NAME, or what DaemonCommand returns) as a
// detached lab server: in a new session, stdin from /dev/null, stdout and stderr appended to LogFile. It records
// the pid in PIDFile and waits (at most 3 s) until the server answers: for the Linux peer, until the echo port
// listens in the server namespace; for the lwip peer, until the program says it is ready and its stack refuses a
// connection to the closed port from the client namespace, over IPv4 and IPv6. If the pidfile names a live
// process, it returns that pid and starts nothing. The lab must be up.
func (l Lab) StartDaemon(argv []string) (pid int, err error) {
	if err := l.check(); err != nil {
		return 0, err
	}
	if len(argv) == 0 {
		return 0, errors.New("lab: start daemon: empty command")
	}
	if pid, ok := l.daemonPID(); ok {
		return pid, nil
	}
	if ok, err := l.echoListens(); err != nil {
		return 0, fmt.Errorf("lab: start daemon: %w", err)
	} else if ok && l.peer() == PeerLinux {
		return 0, fmt.Errorf("lab: start daemon: port %d already listens in %s, served by another process",
			PortEcho, l.ServerNS)
	}
	if err := os.MkdirAll(l.runDir(), 0o755); err != nil {
		return 0, fmt.Errorf("lab: start daemon: %w", err)
	}
	logf, err := os.OpenFile(l.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, fmt.Errorf("lab: start daemon: open log: %w", err)
	}
	defer logf.Close()
	// What an earlier daemon wrote (a crashed one's ready line, say) is not this one's: readiness reads past it.
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("lab: start daemon: %w", err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, fmt.Errorf("lab: start daemon: %w", err)
	}
	defer null.Close()

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("lab: start daemon: %w", err)
	}
	pid = cmd.Process.Pid
	// Until it is waited for, the child's /proc entry stays, even if it has already exited: record it first.
	if err := l.writePIDFile(pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return 0, fmt.Errorf("lab: start daemon: %w", err)
	}
	// Reap the child if it exits while this process lives (tests); a CLI parent exits and leaves it to init.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	fail := func(err error) (int, error) {
		syscall.Kill(pid, syscall.SIGKILL)
		os.Remove(l.PIDFile())
		return 0, fmt.Errorf("lab: start daemon: %w%s", err, l.logTail())
	}
	deadline := time.NewTimer(daemonStartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(daemonPoll)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			os.Remove(l.PIDFile())
			return 0, fmt.Errorf("lab: start daemon: exited before listening (%v)%s", err, l.logTail())
		case <-deadline.C:
			if l.peer() == PeerLWIP {
				return fail(fmt.Errorf("the lwip peer did not answer on %v and %v within %v", l.ServerV4, l.ServerV6,
					daemonStartTimeout))
			}
			return fail(fmt.Errorf("port %d not listening after %v", PortEcho, daemonStartTimeout))
		case <-tick.C:
			ok, err := l.daemonReady(logStart)
			if err != nil {
				return fail(err)
			}
			if ok {
				return pid, nil
			}
		}
	}
}

// daemonReady reports whether the started server, whose log output begins at logStart, answers (see
// StartDaemon).
func (l Lab) daemonReady(logStart int64) (bool, error) {
	if l.peer() == PeerLWIP {
		return l.peerAnswers(context.Background(), logStart)
	}
	return l.echoListens()
}

// echoListens reports whether something listens on the echo port in the server namespace.
func (l Lab) echoListens() (bool, error) {
	socks, err := sockets(l.ServerNS)
	if err != nil {
		return false, err
	}
	for _, s := range socks {
		if s.State == tcpListen && s.Local.Port() == PortEcho {
			return true, nil
		}
	}
	return false, nil
}

// logTail returns the end of the daemon log, prefixed for an error message, or nothing.
func (l Lab) logTail() string {
	b, err := os.ReadFile(l.LogFile())
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	if len(b) > 512 {
		b = b[len(b)-512:]
	}
	return "; log " + l.LogFile() + ": " + strings.TrimSpace(string(b))
}

// writePIDFile records pid and its start time, so a later run does not mistake a reused pid for the daemon.
func (l Lab) writePIDFile(pid int) error {
	start, _, err := procStat(pid)
	if err != nil {
		return fmt.Errorf("read process start time: %w", err)
	}
	tmp := l.PIDFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", pid, start)), 0o644); err != nil {
		return fmt.Errorf("write pidfile: %w", err)
	}
	if err := os.Rename(tmp, l.PIDFile()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pidfile: %w", err)
	}
	return nil
}

// daemonPID returns the pid from the pidfile if that process still runs (and is the one that was started).
func (l Lab) daemonPID() (int, bool) {
	b, err := os.ReadFile(l.PIDFile())
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return 0, false
	}
	return pid, alive(pid, start)
}

// alive reports whether pid runs, is not a zombie, and started at start (clock ticks after boot).
func alive(pid int, start uint64) bool {
	got, state, err := procStat(pid)
	return err == nil && got == start && state != 'Z' && state != 'X'
}

// procStat reads the start time and state of pid from /proc/PID/stat.
func procStat(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may contain anything; fields after it are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return start, f[0][0], nil
}

// stopDaemon ends the lab daemon named by the pidfile (SIGTERM, then SIGKILL, both bounded) and removes the
// pidfile and log.
func (l Lab) stopDaemon() error {
	defer os.Remove(l.LogFile())
	pid, ok := l.daemonPID()
	if !ok {
		if err := os.Remove(l.PIDFile()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove pidfile: %w", err)
		}
		return nil
	}
	start, _, _ := procStat(pid)
	gone := func(d time.Duration) bool {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(daemonPoll) {
			if !alive(pid, start) {
				return true
			}
		}
		return !alive(pid, start)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop daemon %d: %w", pid, err)
	}
	if !gone(daemonTermTimeout) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill daemon %d: %w", pid, err)
		}
		if !gone(daemonKillTimeout) {
			return fmt.Errorf("daemon %d still alive after SIGKILL", pid)
		}
	}
	if err := os.Remove(l.PIDFile()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pidfile: %w", err)
	}
	return nil
}
