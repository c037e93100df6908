package lwip

import (
	"strings"
	"testing"
)

// TestBuildWithoutCompiler checks that a missing C compiler is said, with the packages to install.
func TestBuildWithoutCompiler(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Build(t.Context(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "apt-get install liblwip-dev gcc") {
		t.Fatalf("Build without cc: %v, want an error naming apt-get install liblwip-dev gcc", err)
	}
}

// TestSourceIsThePeer checks that the embedded source is the peer program (its ready line is what the lab waits
// for).
func TestSourceIsThePeer(t *testing.T) {
	if !strings.Contains(string(Source()), `"`+ReadyLine) {
		t.Errorf("the embedded source does not print %q", ReadyLine)
	}
}
