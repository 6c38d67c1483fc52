package imagebuild

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type hdr struct {
	name     string
	typ      byte
	mode     int64
	link     string
	contents string
}

func readTar(t *testing.T, b []byte) []hdr {
	t.Helper()
	var out []hdr
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || h.Gname != "root" {
			t.Errorf("%s: owner %d:%d (%s:%s), want 0:0 root:root", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, epoch)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hdr{name: h.Name, typ: h.Typeflag, mode: h.Mode, link: h.Linkname, contents: string(data)})
	}
}

func TestTreeWriteTar(t *testing.T) {
	src := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(src, []byte("binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		build func(*Tree) error
		want  []hdr
	}{
		{
			name: "parents are implied, sorted before children",
			build: func(tr *Tree) error {
				return tr.File("/usr/local/bin/x", src, 0o755)
			},
			want: []hdr{
				{name: "usr/", typ: tar.TypeDir, mode: 0o755},
				{name: "usr/local/", typ: tar.TypeDir, mode: 0o755},
				{name: "usr/local/bin/", typ: tar.TypeDir, mode: 0o755},
				{name: "usr/local/bin/x", typ: tar.TypeReg, mode: 0o755, contents: "binary"},
			},
		},
		{
			name: "explicit directory modes, sticky bit, generated data and links",
			build: func(tr *Tree) error {
				for _, err := range []error{
					tr.Data("/etc/passwd", []byte("root:x:0:0::/:/bin/sh\n"), 0o644),
					tr.Dir("/tmp", 0o777|fs.ModeSticky),
					tr.Dir("/root", 0o700),
					tr.Symlink("/bin/sh", "busybox"),
					tr.Dir("/etc", 0o711), // after the implied one: takes its mode
				} {
					if err != nil {
						return err
					}
				}
				return nil
			},
			want: []hdr{
				{name: "bin/", typ: tar.TypeDir, mode: 0o755},
				{name: "bin/sh", typ: tar.TypeSymlink, mode: 0o777, link: "busybox"},
				{name: "etc/", typ: tar.TypeDir, mode: 0o711},
				{name: "etc/passwd", typ: tar.TypeReg, mode: 0o644, contents: "root:x:0:0::/:/bin/sh\n"},
				{name: "root/", typ: tar.TypeDir, mode: 0o700},
				{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
			},
		},
		{
			name: "adding the same entry twice is one entry",
			build: func(tr *Tree) error {
				if err := tr.File("/a/b", src, 0o644); err != nil {
					return err
				}
				return tr.File("/a//b", src, 0o644)
			},
			want: []hdr{
				{name: "a/", typ: tar.TypeDir, mode: 0o755},
				{name: "a/b", typ: tar.TypeReg, mode: 0o644, contents: "binary"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTree()
			if err := tt.build(tr); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := tr.WriteTar(&buf); err != nil {
				t.Fatal(err)
			}
			got := readTar(t, buf.Bytes())
			if len(got) != len(tt.want) {
				t.Fatalf("got %d entries %+v, want %d %+v", len(got), got, len(tt.want), tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("entry %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestTreeErrors(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, f := range []string{a, b} {
		if err := os.WriteFile(f, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		build   func(*Tree) error
		wantErr string
	}{
		{"relative path", func(tr *Tree) error { return tr.File("usr/x", a, 0o644) }, "not absolute"},
		{"the root", func(tr *Tree) error { return tr.Dir("/", 0o755) }, "names the root"},
		{"missing host file", func(tr *Tree) error { return tr.File("/x", filepath.Join(dir, "nope"), 0o644) }, "no such file"},
		{"host directory as a file", func(tr *Tree) error { return tr.File("/x", dir, 0o644) }, "not a regular file"},
		{"two files at one path", func(tr *Tree) error {
			if err := tr.File("/x", a, 0o644); err != nil {
				return err
			}
			return tr.File("/x", b, 0o644)
		}, "added twice"},
		{"file over a link", func(tr *Tree) error {
			if err := tr.Symlink("/x", "y"); err != nil {
				return err
			}
			return tr.File("/x", a, 0o644)
		}, "added twice"},
		{"child of a file", func(tr *Tree) error {
			if err := tr.File("/x", a, 0o644); err != nil {
				return err
			}
			return tr.File("/x/y", a, 0o644)
		}, "not a directory"},
		{"child of a link", func(tr *Tree) error {
			if err := tr.Symlink("/var/run", "../run"); err != nil {
				return err
			}
			return tr.Data("/var/run/x", nil, 0o644)
		}, "not a directory"},
		{"link without target", func(tr *Tree) error { return tr.Symlink("/x", "") }, "no target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.build(NewTree())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCopyFileShrunk(t *testing.T) {
	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := NewTree()
	if err := tr.File("/f", src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte("01"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tr.WriteTar(io.Discard); err == nil || !strings.Contains(err.Error(), "shrank") {
		t.Fatalf("got %v, want an error about the shrunk file", err)
	}
}
