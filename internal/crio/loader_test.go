package crio

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
)

// builtCrio is cri-o as make components builds it; scripts/test.sh runs this test after the
// build with U7S_COMPONENTS_BUILT set, where its absence is a failure.
const builtCrio = "../../_output/bin/crio"

// TestCrioLoadsConfig gives the node's crio.conf to cri-o's own loader (crio config prints the
// configuration it ends up with): every value u7s sets must come out as set, so a key cri-o
// does not know (a typo, a rename upstream) fails here, not on a node.
func TestCrioLoadsConfig(t *testing.T) {
	if _, err := os.Stat(builtCrio); err != nil {
		if os.Getenv("U7S_COMPONENTS_BUILT") != "" {
			t.Fatalf("cri-o is not built: %v", err)
		}
		t.Skip("cri-o is not built yet (make components); scripts/test.sh runs this after the build")
	}
	for _, mode := range []cgroups.Mode{cgroups.V1Delegated, cgroups.V2Delegated, cgroups.None} {
		n := &config.Node{Cgroup: mode, PauseImage: "registry.local/k8s-p10/pause:3.10.2"}
		b, err := New(n, Dirs{State: "/var/lib/u7s/crio", Run: "/run/u7s/crio"}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		conf := filepath.Join(dir, "crio.conf")
		if err := os.WriteFile(conf, b, 0o644); err != nil {
			t.Fatal(err)
		}
		// An empty drop-in directory: nothing of this machine's /etc/crio mixes in.
		out, err := exec.Command(builtCrio, "--config", conf, "--config-dir", t.TempDir(), "config").Output()
		if err != nil {
			t.Fatalf("%s: cri-o refuses the configuration: %v\n%s", mode, err, b)
		}
		sections := crioSections(string(out))
		var m map[string]any
		if err := toml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, l := range leaves("", m) {
			if !sections[l.table][l.key+" = "+l.value] {
				t.Errorf("%s: [%s] %s = %s does not come out of cri-o's loader as set; it has [%s] %v", mode, l.table, l.key, l.value, l.table, keys(sections[l.table], l.key))
			}
		}
	}
}

type leaf struct{ table, key, value string }

// leaves are the scalar settings of a TOML document, each with its table and its value as
// cri-o prints it.
func leaves(table string, m map[string]any) []leaf {
	var ls []leaf
	for k, v := range m {
		switch v := v.(type) {
		case map[string]any:
			ls = append(ls, leaves(strings.TrimPrefix(table+"."+k, "."), v)...)
		case string:
			ls = append(ls, leaf{table, k, fmt.Sprintf("%q", v)})
		case bool, int64:
			ls = append(ls, leaf{table, k, fmt.Sprint(v)})
		}
	}
	return ls
}

var tableLine = regexp.MustCompile(`^#? ?\[([a-z0-9_.-]+)\]$`)

// crioSections reads crio config's output: the "key = value" lines of each table, commented
// (cri-o comments a setting out where it equals its default) or not.
func crioSections(out string) map[string]map[string]bool {
	s := map[string]map[string]bool{}
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		if m := tableLine.FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		line = strings.TrimPrefix(strings.TrimPrefix(line, "#"), " ")
		if s[cur] == nil {
			s[cur] = map[string]bool{}
		}
		s[cur][strings.TrimSpace(line)] = true
	}
	return s
}

func keys(lines map[string]bool, key string) []string {
	var ks []string
	for l := range lines {
		if strings.HasPrefix(l, key+" =") {
			ks = append(ks, l)
		}
	}
	sort.Strings(ks)
	return ks
}
