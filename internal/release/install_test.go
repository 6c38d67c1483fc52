package release

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestInstalledBinaries: scripts/install.sh (the one install layout of make install, the rpm
// and the deb) puts every binary of a release where Import copies it from.
func TestInstalledBinaries(t *testing.T) {
	b, err := os.ReadFile("../../scripts/install.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\nNODE_BINS=\(([^)]*)\)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no NODE_BINS=( ... ) in scripts/install.sh")
	}
	installed := strings.Fields(string(m[1]))
	for _, bin := range Binaries {
		if !slices.Contains(installed, bin) {
			t.Errorf("scripts/install.sh's NODE_BINS %v lacks %s, a binary of every release", installed, bin)
		}
	}
}
