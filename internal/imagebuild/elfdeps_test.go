package imagebuild

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const loader = "/lib64/ld-linux-x86-64.so.2"

// hostFile skips the test when the host lacks p (these tests read real Debian binaries).
func hostFile(t *testing.T, p string) string {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Skipf("host has no %s", p)
	}
	return p
}

func TestDepsHost(t *testing.T) {
	xt := hostFile(t, "/usr/sbin/xtables-nft-multi")
	hostFile(t, loader)
	deps, err := (&LibResolver{}).Deps(xt, "/usr/sbin/xtables-nft-multi")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, d := range deps {
		got[path.Base(d)] = true
		if !path.IsAbs(d) {
			t.Errorf("dependency %s is not an absolute image path", d)
		}
	}
	for _, want := range []string{"ld-linux-x86-64.so.2", "libc.so.6", "libxtables.so.12", "libmnl.so.0", "libnftnl.so.11"} {
		if !got[want] {
			t.Errorf("deps of xtables-nft-multi lack %s: %v", want, deps)
		}
	}
	if !slices.Contains(deps, loader) {
		t.Errorf("deps %v lack the program interpreter %s at its own path", deps, loader)
	}
	if !slices.IsSorted(deps) {
		t.Errorf("deps not sorted: %v", deps)
	}
}

func TestDepsNone(t *testing.T) {
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tiny := filepath.Join(t.TempDir(), "tiny")
	if err := os.WriteFile(tiny, []byte("\x7f"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, file string }{
		{"script", script},
		{"shorter than an ELF magic", tiny},
	}
	if _, err := os.Stat("/bin/busybox"); err == nil {
		if CheckExecutable("/bin/busybox") == nil {
			tests = append(tests, struct{ name, file string }{"static busybox", "/bin/busybox"})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deps, err := (&LibResolver{}).Deps(tt.file, "/x")
			if err != nil || len(deps) != 0 {
				t.Fatalf("got %v, %v; want no deps", deps, err)
			}
		})
	}
}

// fakeRoot copies a dynamic host binary and, per lib dir given, its libraries into a temp root.
func fakeRoot(t *testing.T, bin string, libDir string, skip ...string) string {
	t.Helper()
	root := t.TempDir()
	deps, err := (&LibResolver{}).Deps(bin, bin)
	if err != nil {
		t.Fatal(err)
	}
	cp := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, dst)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cp(bin, "/bin/prog")
	for _, d := range deps {
		if slices.Contains(skip, path.Base(d)) {
			continue
		}
		if d == loader {
			cp(d, d)
			continue
		}
		cp(d, path.Join(libDir, path.Base(d)))
	}
	return root
}

func TestDepsFakeRoot(t *testing.T) {
	bin := hostFile(t, "/usr/sbin/xtables-nft-multi")

	t.Run("resolves inside the root, in the configured dirs", func(t *testing.T) {
		root := fakeRoot(t, bin, "/opt/lib")
		// A file of the same name that is no ELF library comes first and is skipped.
		if err := os.MkdirAll(filepath.Join(root, "/early"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "/early/libc.so.6"), []byte("not a library"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := &LibResolver{Root: root, Dirs: []string{"/early", "/opt/lib"}}
		deps, err := r.Deps(filepath.Join(root, "/bin/prog"), "/bin/prog")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range deps {
			if d != loader && path.Dir(d) != "/opt/lib" {
				t.Errorf("dependency %s not resolved in /opt/lib", d)
			}
		}
		if !slices.Contains(deps, "/opt/lib/libc.so.6") || !slices.Contains(deps, "/opt/lib/libnftnl.so.11") {
			t.Errorf("deps %v lack libc or libnftnl", deps)
		}
	})

	t.Run("a missing library names itself and its user", func(t *testing.T) {
		root := fakeRoot(t, bin, "/opt/lib", "libmnl.so.0")
		r := &LibResolver{Root: root, Dirs: []string{"/opt/lib"}}
		_, err := r.Deps(filepath.Join(root, "/bin/prog"), "/bin/prog")
		if err == nil || !strings.Contains(err.Error(), "libmnl.so.0") || !strings.Contains(err.Error(), "not found in /opt/lib") {
			t.Fatalf("got %v, want an error naming libmnl.so.0", err)
		}
	})

	t.Run("a missing loader", func(t *testing.T) {
		root := fakeRoot(t, bin, "/opt/lib", "ld-linux-x86-64.so.2")
		r := &LibResolver{Root: root, Dirs: []string{"/opt/lib"}}
		_, err := r.Deps(filepath.Join(root, "/bin/prog"), "/bin/prog")
		if err == nil || !strings.Contains(err.Error(), "dynamic loader") {
			t.Fatalf("got %v, want an error about the dynamic loader", err)
		}
	})
}

func TestCheckExecutable(t *testing.T) {
	script := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file    string
		wantErr string
	}{
		{self, ""},
		{script, "not an ELF executable"},
		{filepath.Join(t.TempDir(), "nope"), "no such file"},
	}
	for _, tt := range tests {
		err := CheckExecutable(tt.file)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckExecutable(%s) = %v, want %q", tt.file, err, tt.wantErr)
		}
	}
}
