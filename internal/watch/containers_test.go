package watch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRootfsWrites(t *testing.T) {
	upper := t.TempDir()
	started := time.Now().Add(-time.Minute)
	write := func(rel string, mtime time.Time) {
		p := filepath.Join(upper, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write("tmp/dropped", time.Now())                                         // written by the container: found
	write("etc/cron.d/evil", time.Now())                                     // found
	write("etc/hostname", time.Now())                                        // a mount point: not the container's
	write("var/run/secrets/kubernetes.io/token", time.Now())                 // under a mount
	write("etc/passwd", started.Add(-time.Second))                           // the runtime's, before the start
	if err := os.MkdirAll(filepath.Join(upper, "data"), 0o755); err != nil { // a directory alone
		t.Fatal(err)
	}
	if err := syscall.Mknod(filepath.Join(upper, "gone"), syscall.S_IFCHR, 0); err != nil { // a whiteout
		t.Fatal(err)
	}
	c := Container{Namespace: "shop", Pod: "web", Name: "c", UpperDir: upper, Started: started,
		Mounts: []string{"/etc/hostname", "/var/run/secrets/kubernetes.io/"}}
	clean := Container{Namespace: "shop", Pod: "db", Name: "c", UpperDir: t.TempDir(), Started: started}
	fs, err := RootfsWrites([]Container{c, clean})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 {
		t.Fatalf("findings: %v", fs)
	}
	f := fs[0]
	if f.ID != "container-rootfs-write" || f.Subject != "shop/web c" || f.Count != 2 ||
		!strings.Contains(f.Message, "/etc/cron.d/evil, /tmp/dropped") || f.Priority != Warning {
		t.Errorf("finding %+v", f)
	}
}

func TestRunKeepsStateAndReportsFailedChecks(t *testing.T) {
	state := filepath.Join(t.TempDir(), "watch", "state.json")
	checks := []Check{
		{"works", "", func(_ context.Context, st *State) ([]Finding, error) {
			st.Audit.Offset += 10
			return []Finding{{ID: "b-info", Priority: Info}, {ID: "a-warn", Priority: Warning}}, nil
		}},
		{"broken", "", func(context.Context, *State) ([]Finding, error) { return nil, errors.New("no socket") }},
	}
	for run := 1; run <= 2; run++ {
		fs, failed, err := Run(context.Background(), checks, state)
		if err != nil {
			t.Fatal(err)
		}
		if failed["broken"] == nil || len(fs) != 3 || fs[0].ID != "watch-check-failed" || fs[0].Priority != Critical || fs[1].ID != "a-warn" {
			t.Fatalf("run %d: %v %v", run, fs, failed)
		}
		b, _ := os.ReadFile(state)
		if want := `"offset":` + map[int]string{1: "10", 2: "20"}[run]; !strings.Contains(string(b), want) {
			t.Errorf("run %d: state %s, want %s", run, b, want)
		}
	}
	var text strings.Builder
	fs, failed, _ := Run(context.Background(), checks, state)
	if err := Textfile(&text, fs, []string{"works", "broken"}, failed); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`u7s_watch_findings{id="a-warn",check="",priority="warning"} 1`, `u7s_watch_check_ok{check="broken"} 0`, `u7s_watch_check_ok{check="works"} 1`} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("textfile lacks %s:\n%s", want, text.String())
		}
	}
}
