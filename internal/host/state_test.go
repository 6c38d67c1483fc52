package host

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// A directory that existed keeps what it had; what u7s added to it, and what it made, goes.
func TestRemoveRecordedUndoesOnlyWhatWasMade(t *testing.T) {
	root := t.TempDir()
	s := &system{root: root}
	write(t, root, "/etc/kubernetes/pki/ca.crt", "the admin's own CA")
	if err := s.makeDir("/etc/kubernetes", 0o755, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	if err := s.makeDir("/run/u7s", 0o755, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	write(t, root, "/etc/kubernetes/admin.conf", "made by kubeadm")
	write(t, root, "/run/u7s/ready", "x")
	write(t, root, "/etc/u7s/other.conf", "the admin's")
	st, err := s.loadState()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(st.Created, "/run/u7s") || slices.Contains(st.Created, "/etc/kubernetes") {
		t.Fatalf("recorded %+v", st)
	}
	if err := s.removeRecorded(nil); err != nil {
		t.Fatal(err)
	}
	if got := read(t, root, "/etc/kubernetes/pki/ca.crt"); got != "the admin's own CA" {
		t.Errorf("a file that existed before was changed: %q", got)
	}
	for _, gone := range []string{"/etc/kubernetes/admin.conf", "/run/u7s"} {
		if _, err := os.Stat(filepath.Join(root, gone)); err == nil {
			t.Errorf("%s was left", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "/etc/u7s/other.conf")); err != nil {
		t.Errorf("an unrecorded file was removed: %v", err)
	}
	// Twice is fine.
	if err := s.removeRecorded(nil); err != nil {
		t.Fatal(err)
	}
}

// A made directory that holds volumes to keep (reset's Retain volumes) loses all but them.
func TestRemoveRecordedKeepsWhatIsKept(t *testing.T) {
	root := t.TempDir()
	s := &system{root: root}
	if err := s.makeDir("/var/lib/u7s", 0o755, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	write(t, root, "/var/lib/u7s/releases/v1/kubelet", "x")
	write(t, root, "/var/lib/u7s/volumes/pvc-a/data", "kept")
	write(t, root, "/var/lib/u7s/volumes/pvc-a.json", "{}")
	write(t, root, "/var/lib/u7s/volumes/pvc-b/data", "gone")
	if err := s.removeRecorded([]string{"/var/lib/u7s/volumes/pvc-a", "/var/lib/u7s/volumes/pvc-a.json"}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, root, "/var/lib/u7s/volumes/pvc-a/data"); got != "kept" {
		t.Errorf("a kept volume's file is %q", got)
	}
	for _, gone := range []string{"/var/lib/u7s/releases", "/var/lib/u7s/volumes/pvc-b"} {
		if _, err := os.Stat(filepath.Join(root, gone)); err == nil {
			t.Errorf("%s was left", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "/var/lib/u7s/volumes/pvc-a.json")); err != nil {
		t.Errorf("a kept record was removed: %v", err)
	}
}
