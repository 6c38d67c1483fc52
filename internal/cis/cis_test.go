package cis

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"

	"github.com/u7s/u7s/internal/version"
)

// upstreamCfg is kube-bench's real cfg/ of the pinned release in the module cache (make
// components downloads it), or "" when it is not there.
func upstreamCfg(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		return ""
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "github.com", "aquasecurity", "kube-bench@"+version.Pinned.KubeBench, "cfg")
	if _, err := os.Stat(filepath.Join(dir, Upstream)); err != nil {
		return ""
	}
	return dir
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// checksByID are the checks of a benchmark directory's controls files, by id (as written: 2.10
// is not 2.1), each with the file it is in.
func checksByID(t *testing.T, dir string) map[string]map[string]any {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	all := map[string]map[string]any{}
	for _, f := range files {
		if filepath.Base(f) == "config.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var controls struct {
			Groups []struct{ Checks []yaml.Node }
		}
		if err := yaml.Unmarshal(b, &controls); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range controls.Groups {
			for _, c := range g.Checks {
				var m map[string]any
				if err := c.Decode(&m); err != nil {
					t.Fatal(err)
				}
				id := mapValue(&c, "id").Value
				if _, dup := all[id]; dup {
					t.Fatalf("check %s twice", id)
				}
				m["file"] = filepath.Base(f)
				all[id] = m
			}
		}
	}
	return all
}

// testProfile writes the profile of upstream and checks it: exactly NotApplicable's checks
// are skips with their reason, everything else is upstream's.
func testProfile(t *testing.T, upstream string) {
	dir := t.TempDir()
	l := Layout{ProxyKubeconfig: "/var/lib/kubelet/pods/p/kubeconfig.conf", ProxyConfig: "/var/lib/kubelet/pods/p/config.conf"}
	if err := WriteProfile(upstream, dir, l); err != nil {
		t.Fatal(err)
	}
	want := checksByID(t, filepath.Join(upstream, Upstream))
	got := checksByID(t, filepath.Join(dir, Benchmark))
	if len(got) != len(want) {
		t.Fatalf("profile has %d checks, upstream %d", len(got), len(want))
	}
	reasons := map[string]string{}
	for _, c := range NotApplicable {
		reasons[c.ID] = c.Reason
	}
	automated := map[string]AutomatedCheck{}
	for _, a := range Automated {
		automated[a.ID] = a
		if _, ok := want[a.ID]; !ok {
			t.Errorf("automated check %s is not in %s", a.ID, upstream)
		}
	}
	skipped := 0
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("check %s is missing from the profile", id)
			continue
		}
		if a, ok := automated[id]; ok {
			checkAutomated(t, a, g, w)
			continue
		}
		reason, na := reasons[id]
		if !na {
			if !reflect.DeepEqual(g, w) {
				t.Errorf("check %s changed:\n got %v\nwant %v", id, g, w)
			}
			continue
		}
		skipped++
		if g["type"] != "skip" {
			t.Errorf("check %s: type %v, want skip", id, g["type"])
		}
		if r := g["remediation"]; r != NotApplicablePrefix+reason {
			t.Errorf("check %s: remediation %q, want %q", id, r, NotApplicablePrefix+reason)
		}
		// Nothing else of the check changes.
		for _, k := range []string{"type", "remediation"} {
			delete(g, k)
			delete(w, k)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("check %s: more than type and remediation changed:\n got %v\nwant %v", id, g, w)
		}
	}
	if skipped != len(NotApplicable) {
		t.Errorf("%d checks skipped, the list has %d", skipped, len(NotApplicable))
	}

	// config.yaml: u7s's definitions, the rest upstream's, the benchmark mapped.
	up := readYAML(t, filepath.Join(upstream, "config.yaml"))
	cfg := readYAML(t, filepath.Join(dir, "config.yaml"))
	for k, v := range up {
		switch k {
		case "master", "node", "etcd", "controlplane", "policies":
			continue
		case "version_mapping", "target_mapping":
			v := v.(map[string]any)
			g := cfg[k].(map[string]any)
			if _, ok := g[Benchmark]; !ok {
				t.Errorf("%s has no %s", k, Benchmark)
			}
			delete(g, Benchmark)
			if !reflect.DeepEqual(g, v) {
				t.Errorf("%s: upstream's entries changed", k)
			}
		default:
			if !reflect.DeepEqual(cfg[k], v) {
				t.Errorf("config.yaml %s changed", k)
			}
		}
	}
	vm := readYAML(t, filepath.Join(dir, "config.yaml"))["version_mapping"].(map[string]any)
	if vm[Benchmark] != Benchmark {
		t.Errorf("version_mapping[%s] = %v", Benchmark, vm[Benchmark])
	}
	tm := readYAML(t, filepath.Join(dir, "config.yaml"))["target_mapping"].(map[string]any)
	if !reflect.DeepEqual(tm[Benchmark], up["target_mapping"].(map[string]any)[Upstream]) {
		t.Errorf("target_mapping[%s] = %v, want %s's", Benchmark, tm[Benchmark], Upstream)
	}
	node := cfg["node"].(map[string]any)
	proxy := node["proxy"].(map[string]any)
	if proxy["defaultkubeconfig"] != l.ProxyKubeconfig || proxy["defaultconf"] != l.ProxyConfig {
		t.Errorf("node.proxy = %v, want the layout's kube-proxy files", proxy)
	}
	kubelet := node["kubelet"].(map[string]any)
	if kubelet["defaultconf"] != "/var/lib/kubelet/config.yaml" || kubelet["defaultkubeconfig"] != "/etc/kubernetes/kubelet.conf" {
		t.Errorf("node.kubelet = %v", kubelet)
	}
	if _, ok := kubelet["svc"]; ok {
		t.Errorf("node.kubelet has a service file: %v", kubelet["svc"])
	}
	etcd := cfg["etcd"].(map[string]any)["etcd"].(map[string]any)
	if etcd["defaultdatadir"] != "/var/lib/etcd" || etcd["defaultconf"] != "/etc/kubernetes/manifests/etcd.yaml" {
		t.Errorf("etcd.etcd = %v", etcd)
	}
	files, _ := filepath.Glob(filepath.Join(upstream, Upstream, "*.yaml"))
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, Benchmark, filepath.Base(f))); err != nil {
			t.Errorf("%s is not in the profile: %v", filepath.Base(f), err)
		}
	}
}

// checkAutomated: an automated check has u7s's audit, test and remediation, no type (manual),
// "(Automated by u7s)" in its text, and the rest upstream's.
func checkAutomated(t *testing.T, a AutomatedCheck, g, w map[string]any) {
	t.Helper()
	if w["type"] != "manual" {
		t.Errorf("check %s is not manual upstream: %v", a.ID, w["type"])
	}
	if _, ok := g["type"]; ok {
		t.Errorf("check %s: still of type %v", a.ID, g["type"])
	}
	if g["audit"] != a.Audit || g["remediation"] != a.Remediation {
		t.Errorf("check %s: audit %q, remediation %q", a.ID, g["audit"], g["remediation"])
	}
	wantTests := map[string]any{"test_items": []any{map[string]any{"flag": a.Flag, "compare": map[string]any{"op": "eq", "value": a.Value}}}}
	if !reflect.DeepEqual(g["tests"], wantTests) {
		t.Errorf("check %s: tests %v, want %v", a.ID, g["tests"], wantTests)
	}
	text, _ := g["text"].(string)
	if !strings.HasSuffix(text, "(Automated by u7s)") || strings.Contains(text, "Manual") {
		t.Errorf("check %s: text %q", a.ID, text)
	}
	for _, k := range []string{"type", "audit", "tests", "remediation", "text"} {
		delete(g, k)
		delete(w, k)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("check %s: more than its audit changed:\n got %v\nwant %v", a.ID, g, w)
	}
}

// The audit of an automated check, run by the shell as kube-bench runs it, with kubectl's
// answer faked: "Flag: Value" exactly when every node's controller is ready.
func TestAutomatedAudit(t *testing.T) {
	bin := t.TempDir()
	for answer, want := range map[string]bool{"4/4": true, "3/4": false, "0/0": false, "": false, "/": false} {
		script := "#!/bin/sh\nprintf '%s' '" + answer + "'\n"
		if err := os.WriteFile(filepath.Join(bin, "kubectl"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, a := range Automated {
			cmd := exec.Command("/bin/sh", "-c", a.Audit)
			cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin"}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v", a.ID, err)
			}
			if got := strings.Contains(string(out), a.Flag+": "+a.Value+" "); got != want {
				t.Errorf("%s with kubectl answering %q: %q", a.ID, answer, out)
			}
		}
	}
}

func TestProfileUpstream(t *testing.T) {
	dir := upstreamCfg(t)
	if dir == "" {
		t.Skipf("kube-bench %s is not in the module cache (make components COMPONENTS=kube-bench downloads it)", version.Pinned.KubeBench)
	}
	testProfile(t, dir)
}

func TestProfileTestdata(t *testing.T) { testProfile(t, "testdata/cfg") }

func TestProfileMissingCheck(t *testing.T) {
	old := NotApplicable
	t.Cleanup(func() { NotApplicable = old })
	NotApplicable = append(slices.Clone(old), Check{"9.9.9", "no such check"})
	err := WriteProfile("testdata/cfg", t.TempDir(), Layout{})
	if err == nil || !strings.Contains(err.Error(), "9.9.9") {
		t.Fatalf("err = %v, want one naming 9.9.9", err)
	}
}

func TestProfileNotKubeBench(t *testing.T) {
	if err := WriteProfile(t.TempDir(), t.TempDir(), Layout{}); err == nil {
		t.Fatal("a directory without config.yaml gave no error")
	}
}

func TestNotApplicableUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range NotApplicable {
		if seen[c.ID] || c.Reason == "" {
			t.Errorf("check %s: listed twice or without a reason", c.ID)
		}
		seen[c.ID] = true
	}
}

func TestDiscoverLayout(t *testing.T) {
	root := t.TempDir()
	if l := discoverLayout(root); l != (Layout{}) {
		t.Fatalf("no pods: %+v", l)
	}
	// kubelet's ConfigMap volume: files are links into ..data, a link to a timestamped dir.
	vol := filepath.Join(root, "pods", "uid1", "volumes", "kubernetes.io~configmap", "kube-proxy")
	data := filepath.Join(vol, "..2026_12_01_11_23_00.1")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"kubeconfig.conf", "config.conf"} {
		if err := os.WriteFile(filepath.Join(data, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("..data/"+f, filepath.Join(vol, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("..2026_12_01_11_23_00.1", filepath.Join(vol, "..data")); err != nil {
		t.Fatal(err)
	}
	l := discoverLayout(root)
	if l.ProxyKubeconfig != filepath.Join(data, "kubeconfig.conf") || l.ProxyConfig != filepath.Join(data, "config.conf") {
		t.Fatalf("layout %+v, want the files in %s", l, data)
	}
}

// TestReadmeListsNotApplicable: the README's table is NotApplicable, check by check (this
// the top README's section).
func TestReadmeListsNotApplicable(t *testing.T) {
	var text string
	for _, f := range []string{"../../README.md"} {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "`u7s check cis`") {
			text = string(b)
			break
		}
	}
	if text == "" {
		t.Fatal("no README lists the checks not applicable to a u7s node")
	}
	// Only the benchmark's section: from its heading to the next one of its level or above.
	if i := strings.Index(text, "CIS benchmark (`u7s check cis`)"); i >= 0 {
		text = text[i:]
		if j := strings.Index(text, "\n## "); j >= 0 {
			text = text[:j]
		}
	}
	got := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 5 {
			continue
		}
		id := strings.TrimSpace(cells[1])
		if id == "check" || strings.HasPrefix(id, "-") {
			continue
		}
		got[id] = strings.TrimSpace(cells[3])
	}
	if len(got) != len(NotApplicable) {
		t.Errorf("the README lists %d checks, NotApplicable has %d", len(got), len(NotApplicable))
	}
	for _, c := range NotApplicable {
		if got[c.ID] != c.Reason {
			t.Errorf("README, check %s:\n got %q\nwant %q", c.ID, got[c.ID], c.Reason)
		}
	}
}

func TestMissingProcesses(t *testing.T) {
	proc := t.TempDir()
	for pid, comm := range map[string]string{"1": "namespace-init", "30": "crio", "144": "kubelet", "683": "kube-apiserver", "673": "kube-controller"} {
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "comm"), []byte(comm+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := missingProcesses(proc, Targets(false)); len(got) != 0 {
		t.Errorf("worker: missing %v", got)
	}
	if got, want := missingProcesses(proc, Targets(true)), []string{"kube-scheduler", "etcd"}; !slices.Equal(got, want) {
		t.Errorf("control plane: missing %v, want %v", got, want)
	}
}
