package imagebuild

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultLibDirs are the directories searched for shared libraries, in order. All are in the
// built-in search path of Debian's amd64 ld.so, which is all the loader has in an image
// without /etc/ld.so.cache, so a library keeps the directory it was found in.
var DefaultLibDirs = []string{
	"/usr/lib/x86_64-linux-gnu",
	"/lib/x86_64-linux-gnu",
	"/usr/lib64",
	"/lib64",
	"/usr/lib",
	"/lib",
}

// LibResolver finds what a dynamic ELF file needs to run in an image: its program interpreter
// (the dynamic loader) and the shared libraries of its DT_NEEDED entries, transitively,
// resolved against a host root the way ld.so resolves them.
type LibResolver struct {
	// Root is the host tree libraries are taken from; "" means "/".
	Root string
	// Dirs are the library directories searched after DT_RUNPATH/DT_RPATH; nil means DefaultLibDirs.
	Dirs []string
}

// host turns an image path into the host path it is read from.
func (r *LibResolver) host(p string) string {
	if r.Root == "" || r.Root == "/" {
		return p
	}
	return filepath.Join(r.Root, p)
}

// elfInfo is what the resolver needs from one ELF file.
type elfInfo struct {
	class   elf.Class
	machine elf.Machine
	interp  string
	needed  []string
	runpath []string
}

// errNotELF marks a file that is not ELF (a script, a config file): it needs nothing.
var errNotELF = errors.New("not an ELF file")

func readELF(file string) (*elfInfo, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	magic := make([]byte, len(elf.ELFMAG))
	if _, err := io.ReadFull(fh, magic); err != nil || string(magic) != elf.ELFMAG {
		return nil, errNotELF
	}
	f, err := elf.NewFile(fh)
	if err != nil {
		return nil, fmt.Errorf("reading ELF file %s: %w", file, err)
	}
	info := &elfInfo{class: f.Class, machine: f.Machine}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			return nil, fmt.Errorf("reading the program interpreter of %s: %w", file, err)
		}
		info.interp = strings.TrimRight(string(b), "\x00")
	}
	if info.needed, err = f.DynString(elf.DT_NEEDED); err != nil {
		return nil, fmt.Errorf("reading DT_NEEDED of %s: %w", file, err)
	}
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, err := f.DynString(tag)
		if err != nil {
			return nil, fmt.Errorf("reading %s of %s: %w", tag, file, err)
		}
		for _, v := range vals {
			info.runpath = append(info.runpath, filepath.SplitList(v)...)
		}
	}
	return info, nil
}

// Deps returns the image paths of everything the ELF file at hostFile needs at run time: the
// dynamic loader and all shared libraries, transitively, sorted. imagePath is where the file
// goes in the image ($ORIGIN in a run path is relative to it). Static executables and
// non-ELF files need nothing.
func (r *LibResolver) Deps(hostFile, imagePath string) ([]string, error) {
	root, err := readELF(hostFile)
	if errors.Is(err, errNotELF) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	deps := map[string]bool{}
	if root.interp != "" {
		if _, err := os.Stat(r.host(root.interp)); err != nil {
			return nil, fmt.Errorf("%s needs the dynamic loader %s: %w", hostFile, root.interp, err)
		}
		deps[root.interp] = true
	}
	type item struct {
		info      *elfInfo
		imagePath string
		hostFile  string
	}
	queue := []item{{root, imagePath, hostFile}}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		for _, lib := range it.info.needed {
			p, info, err := r.find(lib, it.info, it.imagePath)
			if err != nil {
				return nil, fmt.Errorf("%s (needed by %s): %w", lib, it.hostFile, err)
			}
			if deps[p] || p == imagePath {
				continue
			}
			deps[p] = true
			queue = append(queue, item{info, p, r.host(p)})
		}
	}
	out := make([]string, 0, len(deps))
	for p := range deps {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// find resolves one DT_NEEDED name for a file of the given class and machine, like ld.so:
// a name with a slash is a path; otherwise the run path, then the library dirs, skipping
// files of another class or machine (e.g. i386 libraries).
func (r *LibResolver) find(lib string, by *elfInfo, byImagePath string) (string, *elfInfo, error) {
	var candidates []string
	if strings.Contains(lib, "/") {
		candidates = []string{lib}
	} else {
		dirs := make([]string, 0, len(by.runpath)+len(DefaultLibDirs))
		for _, d := range by.runpath {
			d = strings.ReplaceAll(d, "${ORIGIN}", "$ORIGIN")
			d = strings.ReplaceAll(d, "$ORIGIN", path.Dir(byImagePath))
			dirs = append(dirs, d)
		}
		libDirs := r.Dirs
		if libDirs == nil {
			libDirs = DefaultLibDirs
		}
		dirs = append(dirs, libDirs...)
		for _, d := range dirs {
			candidates = append(candidates, path.Join(d, lib))
		}
	}
	var skipped []string
	for _, c := range candidates {
		if !path.IsAbs(c) {
			continue
		}
		info, err := readELF(r.host(c))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil || info.class != by.class || info.machine != by.machine {
			skipped = append(skipped, c)
			continue
		}
		return c, info, nil
	}
	msg := "not found in " + strings.Join(dirsOf(candidates), ", ")
	if r.Root != "" && r.Root != "/" {
		msg += " under " + r.Root
	}
	if len(skipped) > 0 {
		msg += " (unusable: " + strings.Join(skipped, ", ") + ")"
	}
	return "", nil, errors.New(msg + "; install the package that provides it on the build host")
}

func dirsOf(files []string) []string {
	var dirs []string
	for _, f := range files {
		dirs = append(dirs, path.Dir(f))
	}
	return dirs
}

// CheckExecutable checks that file is an x86-64 ELF file, what a linux/amd64 image can run.
func CheckExecutable(file string) error {
	info, err := readELF(file)
	if errors.Is(err, errNotELF) {
		return fmt.Errorf("%s is not an ELF executable", file)
	}
	if err != nil {
		return err
	}
	if info.machine != elf.EM_X86_64 || info.class != elf.ELFCLASS64 {
		return fmt.Errorf("%s is built for %s/%s, but the images are linux/amd64: rebuild it with GOARCH=amd64", file, info.machine, info.class)
	}
	return nil
}
