// Package lwip builds the lab's second TCP stack: peer.c, a small C program that runs lwIP (Debian's liblwip, the
// library's own TCP through its raw API) on a TAP device in the lab's server namespace. It is compiled with the
// system's C compiler when a lab is brought up with that peer, never by the Go build: tcpshake stays a static,
// cgo-free binary and carries the C source embedded.
package lwip

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed" // the C source
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// source is csrc/peer.c, embedded so that a built tcpshake can compile the peer anywhere.
//
//go:embed csrc/peer.c
var source []byte

// Hint names what the peer needs, for error messages.
const Hint = "the lwip peer needs a C compiler and Debian's lwIP library: apt-get install liblwip-dev gcc"

// ReadyLine starts the line the peer prints on standard output once its interface is up and its listeners open.
const ReadyLine = "lwip peer ready"

// MAC returns the Ethernet address the peer gives its interface (tap_init in csrc/peer.c).
func MAC() [6]byte { return [6]byte{0x02, 0x74, 0x73, 0x00, 0x00, 0x02} }

// buildTimeout bounds one compilation (about 0.3 s on a 2-core machine).
const buildTimeout = 60 * time.Second

// Source returns the embedded C source of the peer.
func Source() []byte { return bytes.Clone(source) }

// Build returns the path of the peer program in dir, compiling it there first when no binary built from the same
// source, flags and library exists (a changed peer.c or an upgraded liblwip gets a new binary). It uses cc from
// PATH, pkg-config for lwIP's flags when present (else -I/usr/include/lwip -llwip).
func Build(ctx context.Context, dir string) (string, error) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", fmt.Errorf("lwip: build the peer: no C compiler (cc) on PATH; %s", Hint)
	}
	cflags, libs := flags(ctx)
	lib := libraryPath(ctx, cc, libs)
	if lib == "" {
		return "", fmt.Errorf("lwip: build the peer: the C compiler finds no liblwip.so; %s", Hint)
	}
	stamp := ""
	if real, err := filepath.EvalSymlinks(lib); err == nil {
		if fi, err := os.Stat(real); err == nil {
			stamp = fmt.Sprintf("%s %d %d", real, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	h := sha256.New()
	for _, part := range [][]byte{source, []byte(cc), []byte(strings.Join(cflags, " ")),
		[]byte(strings.Join(libs, " ")), []byte(stamp)} {
		h.Write(part)
		h.Write([]byte{0})
	}
	bin := filepath.Join(dir, "lwip-peer-"+hex.EncodeToString(h.Sum(nil))[:16])
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o100 != 0 {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("lwip: build the peer: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("lwip: build the peer: %w", err)
	}
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "peer.c")
	if err := os.WriteFile(src, source, 0o644); err != nil {
		return "", fmt.Errorf("lwip: build the peer: %w", err)
	}
	out := filepath.Join(tmp, "peer")
	args := append([]string{"-O2", "-o", out, src}, cflags...)
	args = append(append(args, libs...), "-lpthread")
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cc, args...)
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if err := cmd.Run(); err != nil {
		text := strings.TrimSpace(msg.String())
		if len(text) > 1024 {
			text = text[:1024] + "..."
		}
		return "", fmt.Errorf("lwip: build the peer: %s %s: %w: %s; %s", cc, strings.Join(args, " "), err, text, Hint)
	}
	if err := os.Rename(out, bin); err != nil {
		return "", fmt.Errorf("lwip: build the peer: %w", err)
	}
	return bin, nil
}

// flags returns lwIP's compiler and linker flags from pkg-config, or the Debian defaults without it.
func flags(ctx context.Context) (cflags, libs []string) {
	cflags, libs = []string{"-I/usr/include/lwip"}, []string{"-llwip"}
	pc, err := exec.LookPath("pkg-config")
	if err != nil {
		return cflags, libs
	}
	c, err1 := exec.CommandContext(ctx, pc, "--cflags", "lwip").Output()
	l, err2 := exec.CommandContext(ctx, pc, "--libs", "lwip").Output()
	if err1 != nil || err2 != nil {
		return cflags, libs
	}
	return strings.Fields(string(c)), strings.Fields(string(l))
}

// libraryPath asks the compiler where liblwip.so is (-print-file-name, with any -L of libs); "" if it finds none.
func libraryPath(ctx context.Context, cc string, libs []string) string {
	var args []string
	for _, f := range libs {
		if strings.HasPrefix(f, "-L") {
			args = append(args, f)
		}
	}
	args = append(args, "-print-file-name=liblwip.so")
	out, err := exec.CommandContext(ctx, cc, args...).Output()
	if err != nil {
		return ""
	}
	p := strings.TrimSpace(string(out))
	if !filepath.IsAbs(p) {
		for _, f := range args {
			if d, ok := strings.CutPrefix(f, "-L"); ok {
				if _, err := os.Stat(filepath.Join(d, "liblwip.so")); err == nil {
					return filepath.Join(d, "liblwip.so")
				}
			}
		}
		return ""
	}
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return ""
	}
	return p
}

// Version returns the Debian version of the installed liblwip-dev (dpkg-query), or "" when it cannot tell.
func Version(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", "liblwip-dev").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
