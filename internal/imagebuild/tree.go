package imagebuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// epoch is the modification time of every entry and of the image config: images built
// from the same inputs get the same digests.
var epoch = time.Unix(0, 0).UTC()

// Tree is the file system of a single-layer image, built up in memory (file contents stay
// on the host until WriteTar) and written as one tar with root ownership.
type Tree struct {
	entries map[string]*entry
}

type entry struct {
	typ      byte // tar.TypeDir, tar.TypeReg or tar.TypeSymlink
	mode     fs.FileMode
	src      string // host file of a regular entry
	data     []byte // content of a generated regular entry
	size     int64
	target   string // of a symlink
	implicit bool   // a directory created only as a parent
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{entries: map[string]*entry{}} }

// clean turns an image path into its canonical absolute form.
func clean(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("image path %q is not absolute", p)
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("image path %q names the root", p)
	}
	return c, nil
}

// parents creates the missing parent directories of p and checks that none is a non-directory.
func (t *Tree) parents(p string) error {
	dir := path.Dir(p)
	if dir == "/" {
		return nil
	}
	if e, ok := t.entries[dir]; ok {
		if e.typ != tar.TypeDir {
			return fmt.Errorf("cannot add %s: its parent %s is not a directory in the image", p, dir)
		}
		return nil
	}
	if err := t.parents(dir); err != nil {
		return err
	}
	t.entries[dir] = &entry{typ: tar.TypeDir, mode: fs.ModeDir | 0o755, implicit: true}
	return nil
}

// add inserts e at p; adding the same thing twice is fine, adding something else is an error.
func (t *Tree) add(p string, e *entry) error {
	p, err := clean(p)
	if err != nil {
		return err
	}
	if old, ok := t.entries[p]; ok {
		switch {
		case old.typ == tar.TypeDir && e.typ == tar.TypeDir:
			if !e.implicit {
				old.mode, old.implicit = e.mode, false
			}
			return nil
		case old.typ == e.typ && old.src == e.src && old.target == e.target && bytes.Equal(old.data, e.data) && old.mode == e.mode:
			return nil
		default:
			return fmt.Errorf("image path %s is added twice with different contents (%s and %s)", p, old.describe(), e.describe())
		}
	}
	if err := t.parents(p); err != nil {
		return err
	}
	t.entries[p] = e
	return nil
}

func (e *entry) describe() string {
	switch {
	case e.typ == tar.TypeDir:
		return "a directory"
	case e.typ == tar.TypeSymlink:
		return "a link to " + e.target
	case e.src != "":
		return "host file " + e.src
	default:
		return "generated content"
	}
}

// Dir adds a directory; mode holds permission, setgid and sticky bits.
func (t *Tree) Dir(p string, mode fs.FileMode) error {
	return t.add(p, &entry{typ: tar.TypeDir, mode: fs.ModeDir | mode&(fs.ModePerm|fs.ModeSticky|fs.ModeSetgid)})
}

// File adds the host file src (symlinks followed) at p with mode.
func (t *Tree) File(p, src string, mode fs.FileMode) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("adding %s to the image: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("adding %s to the image: %s is not a regular file", p, src)
	}
	return t.add(p, &entry{typ: tar.TypeReg, mode: mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid), src: src, size: st.Size()})
}

// Data adds a regular file with the given content.
func (t *Tree) Data(p string, data []byte, mode fs.FileMode) error {
	return t.add(p, &entry{typ: tar.TypeReg, mode: mode & fs.ModePerm, data: data, size: int64(len(data))})
}

// Symlink adds a symbolic link p pointing to target.
func (t *Tree) Symlink(p, target string) error {
	if target == "" {
		return fmt.Errorf("symlink %s has no target", p)
	}
	return t.add(p, &entry{typ: tar.TypeSymlink, mode: fs.ModeSymlink | 0o777, target: target})
}

// Has reports whether the tree holds p.
func (t *Tree) Has(p string) bool {
	_, ok := t.entries[path.Clean(p)]
	return ok
}

// Paths lists the tree's paths, sorted (parents before children).
func (t *Tree) Paths() []string {
	ps := make([]string, 0, len(t.entries))
	for p := range t.entries {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// HostFiles returns image path → host path of every regular entry copied from the host.
func (t *Tree) HostFiles() map[string]string {
	m := map[string]string{}
	for p, e := range t.entries {
		if e.typ == tar.TypeReg && e.src != "" {
			m[p] = e.src
		}
	}
	return m
}

// tarMode converts a Go file mode to the permission bits of a tar header.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// WriteTar writes the tree as an uncompressed tar: sorted, so that every directory precedes
// its contents, owned by 0:0, with fixed times.
func (t *Tree) WriteTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, p := range t.Paths() {
		e := t.entries[p]
		hdr := &tar.Header{
			Typeflag: e.typ,
			Name:     strings.TrimPrefix(p, "/"),
			Mode:     tarMode(e.mode),
			Uname:    "root",
			Gname:    "root",
			ModTime:  epoch,
			Format:   tar.FormatPAX,
		}
		switch e.typ {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeSymlink:
			hdr.Linkname = e.target
		case tar.TypeReg:
			hdr.Size = e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing tar header of %s: %w", p, err)
		}
		if e.typ != tar.TypeReg {
			continue
		}
		if e.src == "" {
			if _, err := tw.Write(e.data); err != nil {
				return fmt.Errorf("writing %s: %w", p, err)
			}
			continue
		}
		if err := copyFile(tw, e.src, e.size); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return tw.Close()
}

func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%s shrank from %d to %d bytes while the image was being built", src, size, n)
	}
	return nil
}
