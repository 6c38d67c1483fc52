// Package imagebuild assembles the OCI images of package images from locally built binaries
// and host files, without a container engine: one layer per image, built as a tar with root
// ownership, then pushed to a registry or written to an OCI layout.
package imagebuild

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/u7s/u7s/images"
)

// Builder turns image specs into images.
type Builder struct {
	// BinDir holds the binaries of `make components`.
	BinDir string
	// HostRoot is where host files are read from; "" means "/". Tests point it elsewhere.
	HostRoot string
	// Libs resolves the shared libraries of dynamic ELF files; nil means the host's.
	Libs *LibResolver
	// Applets lists the applets of a busybox binary; nil runs `busybox --list`.
	Applets func(busybox string) ([]string, error)
}

func (b *Builder) host(p string) string {
	if b.HostRoot == "" || b.HostRoot == "/" {
		return p
	}
	return filepath.Join(b.HostRoot, p)
}

func (b *Builder) libs() *LibResolver {
	if b.Libs != nil {
		return b.Libs
	}
	return &LibResolver{Root: b.HostRoot}
}

// MissingError lists what the build host lacks for a set of images.
type MissingError struct {
	Binaries  []string // paths in --bin-dir
	HostFiles []string // "path (Debian package pkg)"
}

func (e *MissingError) Error() string {
	var parts []string
	if len(e.Binaries) > 0 {
		parts = append(parts, fmt.Sprintf("missing binaries %s: build them with `make components` or point --bin-dir at the directory that holds them",
			strings.Join(e.Binaries, ", ")))
	}
	if len(e.HostFiles) > 0 {
		parts = append(parts, fmt.Sprintf("missing host files %s: install those packages on the build host (apt-get install)",
			strings.Join(e.HostFiles, ", ")))
	}
	return strings.Join(parts, "; ")
}

// Check reports, in one error, every required binary and host file the specs need and the
// build host lacks, so that a build does not fail halfway through.
func (b *Builder) Check(specs []images.Spec) error {
	miss := &MissingError{}
	seen := map[string]bool{}
	for _, s := range specs {
		for _, bin := range s.Binaries {
			p := filepath.Join(b.BinDir, bin.Name)
			if _, err := os.Stat(p); err != nil && !bin.Optional && !seen[p] {
				seen[p] = true
				miss.Binaries = append(miss.Binaries, p)
			}
		}
		bins := []string{}
		for _, d := range s.DataFiles {
			bins = append(bins, d.Name)
		}
		if s.Busybox != nil && s.Busybox.Binary != "" {
			bins = append(bins, s.Busybox.Binary)
		}
		for _, name := range bins {
			p := filepath.Join(b.BinDir, name)
			if _, err := os.Stat(p); err != nil && !seen[p] {
				seen[p] = true
				miss.Binaries = append(miss.Binaries, p)
			}
		}
		for _, f := range hostFiles(s) {
			if f.Optional || seen[f.Src] {
				continue
			}
			seen[f.Src] = true
			matches, err := filepath.Glob(b.host(f.Src))
			if err != nil || len(matches) == 0 {
				miss.HostFiles = append(miss.HostFiles, fmt.Sprintf("%s (Debian package %s)", f.Src, f.Package))
			}
		}
	}
	if len(miss.Binaries) == 0 && len(miss.HostFiles) == 0 {
		return nil
	}
	return miss
}

var busyboxFile = images.HostFile{Src: images.BusyboxSrc, Path: images.BusyboxPath, Package: images.BusyboxPackage}

// hostFiles are the host files spec takes, the host's busybox included where it takes that.
func hostFiles(spec images.Spec) []images.HostFile {
	files := spec.HostFiles
	if spec.Busybox != nil && spec.Busybox.Binary == "" {
		files = append(append([]images.HostFile{}, files...), busyboxFile)
	}
	return files
}

// accounts are the image's /etc/passwd and /etc/group: the base's, then the spec's own.
func accounts(spec images.Spec) (passwd, group string) {
	for _, f := range images.Base.Files {
		switch f.Path {
		case "/etc/passwd":
			passwd = f.Content
		case "/etc/group":
			group = f.Content
		}
	}
	members := map[string][]string{}
	var extra []images.Group
	for _, a := range spec.Accounts {
		passwd += fmt.Sprintf("%s:x:%d:%d::/home/%s:/bin/sh\n", a.Name, a.UID, a.GID, a.Name)
		group += fmt.Sprintf("%s:x:%d:\n", a.Name, a.GID)
		for _, g := range a.Groups {
			if _, ok := members[g.Name]; !ok {
				extra = append(extra, g)
			}
			members[g.Name] = append(members[g.Name], a.Name)
		}
	}
	for _, g := range extra {
		group += fmt.Sprintf("%s:x:%d:%s\n", g.Name, g.GID, strings.Join(members[g.Name], ","))
	}
	return passwd, group
}

// Tree lays out the file system of spec's image.
func (b *Builder) Tree(spec images.Spec) (*Tree, error) {
	t := NewTree()
	for _, d := range append(append([]images.Dir{}, images.Base.Dirs...), spec.Dirs...) {
		if err := t.Dir(d.Path, unixMode(d.Mode)); err != nil {
			return nil, err
		}
	}
	passwd, group := accounts(spec)
	for _, f := range append(append([]images.File{}, images.Base.Files...), spec.Files...) {
		content := f.Content
		switch f.Path {
		case "/etc/passwd":
			content = passwd
		case "/etc/group":
			content = group
		}
		if err := t.Data(f.Path, []byte(content), fs.FileMode(f.Mode)); err != nil {
			return nil, err
		}
	}
	links := append(append([]images.Link{}, images.Base.Links...), spec.Links...)

	for _, bin := range spec.Binaries {
		src := filepath.Join(b.BinDir, bin.Name)
		if _, err := os.Stat(src); err != nil {
			if bin.Optional && errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("image %s needs %s: %w; build it with `make components` or fix --bin-dir", spec.Name, src, err)
		}
		if err := CheckExecutable(src); err != nil {
			return nil, fmt.Errorf("image %s: %w", spec.Name, err)
		}
		mode := fs.FileMode(0o755)
		if bin.Mode != 0 {
			mode = unixMode(bin.Mode)
		}
		if err := t.File(bin.Path, src, mode); err != nil {
			return nil, err
		}
	}

	for _, d := range spec.DataFiles {
		src := filepath.Join(b.BinDir, d.Name)
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("image %s needs %s: %w; build it with `make components` or fix --bin-dir", spec.Name, src, err)
		}
		if err := t.File(d.Path, src, fs.FileMode(d.Mode)); err != nil {
			return nil, err
		}
	}
	if bb := spec.Busybox; bb != nil && bb.Binary != "" {
		src := filepath.Join(b.BinDir, bb.Binary)
		if err := CheckExecutable(src); err != nil {
			return nil, fmt.Errorf("image %s: busybox: %w; build it with `make components` or fix --bin-dir", spec.Name, err)
		}
		if err := t.File(images.BusyboxPath, src, 0o755); err != nil {
			return nil, err
		}
	}
	for _, f := range hostFiles(spec) {
		if err := b.addHostFile(t, f); err != nil {
			return nil, fmt.Errorf("image %s: %w", spec.Name, err)
		}
	}
	for _, l := range links {
		if err := t.Symlink(l.Path, l.Target); err != nil {
			return nil, fmt.Errorf("image %s: %w", spec.Name, err)
		}
	}

	if spec.Busybox != nil {
		applets, err := b.applets(spec.Busybox)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", spec.Name, err)
		}
		dir := path.Dir(images.BusyboxPath)
		for _, a := range applets {
			if onPath(t, a) {
				continue // the image's real command of that name
			}
			if err := t.Symlink(path.Join(dir, a), path.Base(images.BusyboxPath)); err != nil {
				return nil, fmt.Errorf("image %s: %w", spec.Name, err)
			}
		}
	}

	// The loader and libraries of every dynamic ELF file, at the paths ld.so looks in.
	libs := b.libs()
	hostFiles := t.HostFiles()
	imagePaths := make([]string, 0, len(hostFiles))
	for p := range hostFiles {
		imagePaths = append(imagePaths, p)
	}
	sort.Strings(imagePaths)
	for _, p := range imagePaths {
		deps, err := libs.Deps(hostFiles[p], p)
		if err != nil {
			return nil, fmt.Errorf("image %s: shared libraries of %s: %w", spec.Name, p, err)
		}
		for _, d := range deps {
			if t.Has(d) {
				continue
			}
			st, err := os.Stat(libs.host(d))
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", spec.Name, err)
			}
			if err := t.File(d, libs.host(d), st.Mode()); err != nil {
				return nil, fmt.Errorf("image %s: %w", spec.Name, err)
			}
		}
	}
	return t, nil
}

// unixMode converts permission bits with sticky/setgid in Unix notation to a Go file mode.
func unixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	return mode
}

// addHostFile copies one host file, or every match of a glob into a directory. In a glob,
// a symlink to a file of the same directory stays a symlink (xtables' alias modules).
func (b *Builder) addHostFile(t *Tree, f images.HostFile) error {
	if !f.IsGlob() {
		src := b.host(f.Src)
		st, err := os.Stat(src)
		if err != nil {
			if f.Optional && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("host file %s: %w; install Debian package %s", f.Src, err, f.Package)
		}
		return t.File(f.Path, src, st.Mode())
	}
	matches, err := filepath.Glob(b.host(f.Src))
	if err != nil {
		return fmt.Errorf("host files %s: %w", f.Src, err)
	}
	if len(matches) == 0 {
		if f.Optional {
			return nil
		}
		return fmt.Errorf("host files %s: none found; install Debian package %s", f.Src, f.Package)
	}
	for _, m := range matches {
		dst := path.Join(f.Path, filepath.Base(m))
		if target, err := os.Readlink(m); err == nil && !strings.Contains(target, "/") {
			if _, err := os.Stat(m); err == nil {
				if err := t.Symlink(dst, target); err != nil {
					return err
				}
				continue
			}
		}
		st, err := os.Stat(m)
		if err != nil {
			return fmt.Errorf("host file %s: %w", m, err)
		}
		if err := t.File(dst, m, st.Mode()); err != nil {
			return err
		}
	}
	return nil
}

// onPath reports whether the tree has a command named name in a directory of images.Path.
func onPath(t *Tree, name string) bool {
	for _, dir := range strings.Split(images.Path, ":") {
		if t.Has(path.Join(dir, name)) {
			return true
		}
	}
	return false
}

func (b *Builder) applets(bb *images.Busybox) ([]string, error) {
	list := b.Applets
	if list == nil {
		list = listApplets
	}
	src := b.host(images.BusyboxSrc)
	if bb.Binary != "" {
		src = filepath.Join(b.BinDir, bb.Binary)
	}
	all, err := list(src)
	if err != nil {
		return nil, err
	}
	if bb.Applets == nil {
		return all, nil
	}
	have := map[string]bool{}
	for _, a := range all {
		have[a] = true
	}
	for _, a := range bb.Applets {
		if !have[a] {
			return nil, fmt.Errorf("%s has no applet %q (busybox --list)", src, a)
		}
	}
	return bb.Applets, nil
}

// listApplets runs `busybox --list`; busybox itself is left out (it is the link target).
func listApplets(busybox string) ([]string, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("cannot run %s --list on %s: build the images on an amd64 host", busybox, runtime.GOARCH)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("listing the applets of %s: %w", busybox, err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			applets = append(applets, a)
		}
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list printed no applets", busybox)
	}
	return applets, nil
}

// Image is a built image whose layer lives in a temporary file until Close.
type Image struct {
	Image v1.Image
	// LayerSize is the compressed size of the layer.
	LayerSize int64
	layerFile string
}

// Close removes the layer's temporary file; the image is unusable afterwards.
func (i *Image) Close() error {
	if i.layerFile == "" {
		return nil
	}
	err := os.Remove(i.layerFile)
	i.layerFile = ""
	return err
}

// Build assembles spec's image: its tree as one gzip layer in a temporary file under tmpDir
// ("" for the default), and a linux/amd64 OCI config. The layer is gzipped at BestSpeed:
// about 2.5 times faster than the default level for Go binaries, for 12% more bytes.
func (b *Builder) Build(spec images.Spec, tmpDir string) (*Image, error) {
	t, err := b.Tree(spec)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(tmpDir, "u7s-layer-"+spec.Name+"-*.tar.gz")
	if err != nil {
		return nil, fmt.Errorf("creating the layer file of %s: %w", spec.Name, err)
	}
	img := &Image{layerFile: f.Name()}
	ok := false
	defer func() {
		if !ok {
			img.Close()
		}
	}()
	if err := writeGzipTar(f, t); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing the layer of %s: %w", spec.Name, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("writing the layer of %s: %w", spec.Name, err)
	}
	layer, err := tarball.LayerFromFile(img.layerFile, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("reading back the layer of %s: %w", spec.Name, err)
	}
	if img.LayerSize, err = layer.Size(); err != nil {
		return nil, err
	}

	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	base, err = mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: spec.Config.Entrypoint,
			Cmd:        spec.Config.Cmd,
			Env:        spec.Config.Env,
			User:       spec.Config.User,
			WorkingDir: spec.Config.WorkingDir,
		},
	})
	if err != nil {
		return nil, err
	}
	img.Image, err = mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "u7s images build " + spec.Name},
	})
	if err != nil {
		return nil, fmt.Errorf("assembling image %s: %w", spec.Name, err)
	}
	ok = true
	return img, nil
}

func writeGzipTar(w io.Writer, t *Tree) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := t.WriteTar(zw); err != nil {
		return err
	}
	return zw.Close()
}
