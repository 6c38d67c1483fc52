package host

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestHostToolsAreRuntimeDeps: every program preflight asks for is brought by the package it
// names, and that package is one of the runtime packages of scripts/host-deps.sh, the one list
// that host set-up, the .deb's Depends and the fresh-host test use.
func TestHostToolsAreRuntimeDeps(t *testing.T) {
	b, err := os.ReadFile("../../scripts/host-deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\nRUNTIME=\((.*?)\n\)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no RUNTIME=( ... ) in scripts/host-deps.sh")
	}
	brings := map[string][]string{} // package: its commands
	for _, line := range strings.Split(string(m[1]), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, dep := range strings.Fields(line) {
			pkg, cmds, _ := strings.Cut(dep, ":")
			brings[pkg] = strings.Split(cmds, ",")
		}
	}
	for _, tool := range append(hostTools, struct{ name, pkg string }{"newuidmap", "uidmap"}, struct{ name, pkg string }{"newgidmap", "uidmap"}) {
		if !slices.Contains(brings[tool.pkg], tool.name) {
			t.Errorf("preflight asks for %s from package %s; scripts/host-deps.sh's RUNTIME has %s:%s", tool.name, tool.pkg, tool.pkg, strings.Join(brings[tool.pkg], ","))
		}
	}
}
