//go:build linux

package app_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"tcpshake/lab"
	"tcpshake/lab/labtest"
)

// TestQuizHandshake plays the teaching texts' handshake with --isn 100 and --quiz, answers from a pipe: right
// answers for the SYN, a wrong ack for our ACK, then the input ends. The verdicts come before each step, the
// story is told whole, and the score counts what was answered.
func TestQuizHandshake(t *testing.T) {
	labtest.EachPeer(t, false, func(t *testing.T, l lab.Lab) {
		answers := "100\nsyn-sent\nSYN_RECV\n101\nestablished\nsyn-received\n101\n5\n"
		r := runWithStdin(t, l, answers, binary(t), "handshake", fmt.Sprintf("%v:%d", l.ServerV4, lab.PortEcho), "--isn", "100",
			"--send", `hello\n`, "--quiz", "--view", "list", "--time-wait", "0")
		for _, want := range []string{
			"quiz: step 1, we send [S]\n  seq? 100\n  right: 100 (relative 0)",
			"right: SYN-SENT", "right: SYN-RECEIVED",
			"quiz: step 2, the peer sends [S.]\n  ack? 101\n  right: 101 (relative 1)",
			"quiz: step 3, we send [.]\n  seq? 101\n  right: 101 (relative 1)\n  ack? 5\n  not quite: you said 5, it is ",
			"quiz: no more answers (end of input)",
			"quiz: 7 of 8 answers right (88%)",
		} {
			if !strings.Contains(r, want) {
				t.Errorf("output lacks %q:\n%s", want, r)
			}
		}
		if i, j := strings.Index(r, "right: 100 (relative 0)"), strings.Index(r, "sent      [S] seq 100"); i < 0 || j < i {
			t.Errorf("the SYN was shown before its questions:\n%s", r)
		}
		if !strings.Contains(r, `data: "hello\n"`) {
			t.Errorf("the story was not told to its end:\n%s", r)
		}
	})
}

// TestQuizAnalyze asks the questions of a capture's conversation (analyze --conn 1 --quiz), and refuses --quiz
// where it cannot work.
func TestQuizAnalyze(t *testing.T) {
	bin := binary(t)
	cmd := exec.Command(bin, "analyze", "../analyze/testdata/echo.pcap", "--conn", "1", "--quiz")
	cmd.Stdin = strings.NewReader("0\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if s := out.String(); !strings.Contains(s, "quiz: step 1") || !strings.Contains(s, "quiz: no more answers") {
		t.Errorf("no quiz in:\n%s", s)
	}
	for _, args := range [][]string{
		{"analyze", "../analyze/testdata/echo.pcap", "--quiz"},
		{"analyze", "-", "--conn", "1", "--quiz"},
		{"analyze", "../analyze/testdata/echo.pcap", "--conn", "1", "--quiz", "--json"},
	} {
		c := exec.Command(bin, args...)
		var o bytes.Buffer
		c.Stdout, c.Stderr = &o, &o
		err := c.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(o.String(), "--quiz") {
			t.Errorf("%q: %v, want exit 2 naming --quiz:\n%s", args, err, o.String())
		}
	}
}

// TestQuizListen: the server's side of the teaching texts' exchange (listen --isn 2000 against handshake --isn
// 100), quizzed from a pipe: what the client's SYN does to both ends (its ISN is the client's choice: not asked),
// then our SYN-ACK's seq 2000 and ack 101.
func TestQuizListen(t *testing.T) {
	l := labtest.New(t)
	bin := binary(t)
	port := fmt.Sprint(randomPort())
	srv := exec.Command(bin, "listen", port, "--isn", "2000", "--quiz", "--view", "list", "--echo", "--listen-timeout", "10s")
	srv.Stdin = strings.NewReader("syn-received\nsyn-sent\n2000\n101\nSYN_RECV\nestablished\n")
	var out syncBuffer
	srv.Stdout, srv.Stderr = &out, &out
	if err := lab.Do(l.ServerNS, srv.Start); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	t.Cleanup(func() {
		if srv.ProcessState == nil {
			srv.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "listening on port") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r := runClient(t, l, bin, "handshake", fmt.Sprintf("%v:%s", l.ServerV4, port), "--isn", "100", "--send", "hi", "--time-wait", "0")
	if r.code != 0 {
		t.Errorf("client: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("listen did not end\n%s", out.String())
	}
	got := out.String()
	for _, want := range []string{
		"quiz: step 1, the peer sends [S]\n  our state after it? syn-received\n  right: SYN-RECEIVED",
		"quiz: step 2, we send [S.]\n  seq? 2000\n  right: 2000 (relative 0)\n  ack? 101\n  right: 101 (relative 1)",
		"quiz: 6 of 6 answers right (100%)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("listen's output lacks %q:\n%s", want, got)
		}
	}
}
