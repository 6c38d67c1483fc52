package watch

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func ids(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID+" "+filepath.Base(f.Subject)+" "+string(f.Priority))
	}
	slices.Sort(out)
	return out
}

func TestBaselineDrift(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("config.yaml", "a", 0o600)
	write("manifests/etcd.yaml", "etcd", 0o600)
	write("manifests/kube-apiserver.yaml", "api", 0o600)
	write("admin.conf", "v1", 0o600)
	write("pki/ca.key", "k", 0o600)
	watched := []Watched{
		{Pattern: filepath.Join(dir, "config.yaml"), Content: true},
		{Pattern: filepath.Join(dir, "manifests", "*"), Content: true},
		{Pattern: filepath.Join(dir, "*.conf")},
		{Pattern: filepath.Join(dir, "pki", "*.key")},
	}
	base := filepath.Join(dir, "watch", "baseline.json")
	if err := RecordBaseline(base, watched); err != nil {
		t.Fatal(err)
	}
	b, ok, err := ReadBaseline(base)
	if err != nil || !ok {
		t.Fatalf("ReadBaseline: %v %v", ok, err)
	}
	if fi, err := os.Stat(base); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("baseline mode: %v %v", fi, err)
	}
	if got, err := BaselineDrift(b, watched); err != nil || len(got) != 0 {
		t.Fatalf("unchanged node: %v %v", got, err)
	}

	write("config.yaml", "b", 0o600)                  // changed content
	write("admin.conf", "v2", 0o600)                  // renewed: content not recorded
	write("manifests/evil.yaml", "privileged", 0o600) // a static pod dropped in
	if err := os.Remove(filepath.Join(dir, "manifests/etcd.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "pki/ca.key"), 0o644); err != nil { // looser
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "manifests/kube-apiserver.yaml"), 0o400); err != nil { // tighter
		t.Fatal(err)
	}
	got, err := BaselineDrift(b, watched)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"drift-file-added evil.yaml critical",
		"drift-file-changed config.yaml critical",
		"drift-file-missing etcd.yaml critical",
		"drift-file-mode ca.key critical",
		"drift-file-mode kube-apiserver.yaml warning",
	}
	if !slices.Equal(ids(got), want) {
		t.Errorf("findings:\n%q\nwant\n%q", ids(got), want)
	}

	if _, ok, err := ReadBaseline(filepath.Join(dir, "none.json")); ok || err != nil {
		t.Errorf("a missing baseline: ok %v err %v, want false and nil", ok, err)
	}
}

func TestGeneratedDrift(t *testing.T) {
	dir := t.TempDir()
	same, changed, loose, tight := filepath.Join(dir, "crio.conf"), filepath.Join(dir, "policy.json"), filepath.Join(dir, "registries.conf"), filepath.Join(dir, "storage.conf")
	for p, data := range map[string]string{same: "conf", changed: `{"default":[{"type":"insecureAcceptAnything"}]}`, loose: "regs", tight: "stor"} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(loose, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tight, 0o600); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{
		same: []byte("conf"), changed: []byte(`{"default":[{"type":"reject"}]}`), loose: []byte("regs"), tight: []byte("stor"),
		filepath.Join(dir, "u7s.yaml"): []byte("missing"),
	}
	got, err := GeneratedDrift(want, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	wantIDs := []string{
		"drift-file-changed policy.json critical",
		"drift-file-missing u7s.yaml critical",
		"drift-file-mode registries.conf critical",
	}
	if !slices.Equal(ids(got), wantIDs) {
		t.Errorf("findings:\n%q\nwant\n%q", ids(got), wantIDs)
	}
}
