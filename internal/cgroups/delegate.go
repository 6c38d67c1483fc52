package cgroups

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/paths"
)

// requiredV1 are the controllers kubelet needs for per-QoS cgroups on v1; without any of
// them delegated the node cannot enforce limits.
var requiredV1 = []string{"cpu", "cpuacct", "cpuset", "memory", "pids"}

// optionalV1 are delegated when they are mounted and writable; name=systemd helps tools
// that look for it.
var optionalV1 = []string{"blkio", "devices", "freezer", "hugetlb", "net_cls", "net_prio", "perf_event", "name=systemd"}

// DelegatedDir is one v1 hierarchy's delegated cgroup.
type DelegatedDir struct {
	// Controllers as /proc/self/cgroup names them, also the mount options in the namespace.
	Controllers []string `json:"controllers"`
	// MountName is the directory under /sys/fs/cgroup the hierarchy is mounted on in the
	// namespace, the host's name for it ("cpu,cpuacct", "systemd").
	MountName string `json:"mountName"`
	// Path is the delegated cgroup's directory on the host.
	Path string `json:"path"`
}

// Delegation is what DelegateV1 made: in each v1 hierarchy, a cgroup owned by the node's
// user below the cgroup of the process that made it.
type Delegation struct {
	Name string         `json:"name"`
	UID  int            `json:"uid"`
	GID  int            `json:"gid"`
	Dirs []DelegatedDir `json:"dirs"`
	// Skipped says which mounted hierarchies were left out, and why.
	Skipped []string `json:"skipped,omitempty"`

	file string // where it was saved; Remove deletes it
}

// DelegateV1 makes, as root, the cgroup <this process's cgroup>/<name> in every v1 hierarchy
// the node uses, copies the cpuset of its parent into it, and gives it (the directory and its
// control files) to uid:gid, so that the user can make child cgroups and set their limits:
// what systemd's Delegate= does on v2. It never touches a hierarchy root or remounts
// anything. It is idempotent, and saves the result in paths.CgroupDelegationFile for the
// supervisor (LoadDelegation). Read-only or unneeded hierarchies are skipped and noted; a
// required one (cpu, cpuacct, cpuset, memory, pids) missing is an error, and the node must
// then run in mode None.
func DelegateV1(layout Layout, name string, uid, gid int) (Delegation, error) {
	if os.Geteuid() != 0 {
		return Delegation{}, errors.New("delegating cgroup v1 subtrees needs root: run it from u7s init or start as root")
	}
	d, err := delegateV1(layout, name, uid, gid)
	if err != nil {
		return d, err
	}
	if err := d.save(paths.CgroupDelegationFile); err != nil {
		return d, err
	}
	return d, nil
}

// mkdirCgroup makes a cgroup; tests replace it to fake the control files cgroupfs adds.
var mkdirCgroup = os.Mkdir

func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}

func mountName(h Hierarchy) string {
	if filepath.Dir(filepath.Clean(h.Mountpoint)) == CgroupRoot || len(h.Controllers) == 0 {
		return filepath.Base(h.Mountpoint)
	}
	var cs []string
	for _, c := range h.Controllers {
		cs = append(cs, strings.TrimPrefix(c, "name="))
	}
	return strings.Join(cs, ",")
}

func delegateV1(l Layout, name string, uid, gid int) (Delegation, error) {
	if !l.IsV1() {
		return Delegation{}, errors.New("cgroup v1 delegation asked for, but the host has no cgroup v1 hierarchies")
	}
	if !validName(name) {
		return Delegation{}, fmt.Errorf("invalid cgroup name %q", name)
	}
	d := Delegation{Name: name, UID: uid, GID: gid}
	// Plan everything first; change nothing until every required controller is usable.
	var plan []Hierarchy
	have := map[string]bool{}
	for _, h := range l.V1 {
		label := strings.Join(h.Controllers, ",")
		wanted := slices.ContainsFunc(h.Controllers, func(c string) bool {
			return slices.Contains(requiredV1, c) || slices.Contains(optionalV1, c)
		})
		switch {
		case !wanted:
			d.Skipped = append(d.Skipped, label+": not used by the node")
		case h.ReadOnly:
			d.Skipped = append(d.Skipped, label+": mounted read-only at "+h.Mountpoint)
		case h.Dir == "":
			d.Skipped = append(d.Skipped, fmt.Sprintf("%s: this process's cgroup %s is outside the mount at %s", label, h.Cgroup, h.Mountpoint))
		default:
			plan = append(plan, h)
			for _, c := range h.Controllers {
				have[c] = true
			}
		}
	}
	var missing []string
	for _, c := range requiredV1 {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return d, fmt.Errorf("cannot delegate the cgroup v1 controllers %s (%s): mount them read-write "+
			"(in a container, prepare the subtree from the container's root or give it writable cgroups), "+
			"or use cgroup v2 with systemd Delegate=yes; without them pods run without resource limits",
			strings.Join(missing, ", "), strings.Join(d.Skipped, "; "))
	}

	var made []string
	undo := func() {
		for _, p := range slices.Backward(made) {
			os.Remove(p)
		}
	}
	for _, h := range plan {
		dir := filepath.Join(h.Dir, name)
		err := mkdirCgroup(dir, 0o755)
		switch {
		case err == nil:
			made = append(made, dir)
		case !errors.Is(err, fs.ErrExist):
			undo()
			return d, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		if err := prepareDir(h, dir, uid, gid); err != nil {
			undo()
			return d, err
		}
		d.Dirs = append(d.Dirs, DelegatedDir{Controllers: h.Controllers, MountName: mountName(h), Path: dir})
	}
	return d, nil
}

// writeCgroupFile writes an existing control file; it never creates one.
func writeCgroupFile(p, v string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func readTrim(p string) string {
	data, _ := os.ReadFile(p)
	return strings.TrimSpace(string(data))
}

// prepareDir sets up one new delegated cgroup and hands it to uid:gid.
func prepareDir(h Hierarchy, dir string, uid, gid int) error {
	if h.Has("cpuset") {
		// A new cpuset cgroup starts empty and takes no process until given cpus and mems.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if readTrim(filepath.Join(dir, f)) != "" {
				continue
			}
			v := effectiveCpuset(h.Mountpoint, h.Dir, f)
			if v == "" {
				return fmt.Errorf("no %s found above %s to copy into the delegated cgroup", f, dir)
			}
			if err := writeCgroupFile(filepath.Join(dir, f), v); err != nil {
				return fmt.Errorf("copy %s into %s: %w", f, dir, err)
			}
		}
		// Children made by the node's user copy our cpuset, too.
		_ = writeCgroupFile(filepath.Join(dir, "cgroup.clone_children"), "1")
	}
	if h.Has("memory") {
		// Always 1 on recent kernels (the write fails there); older ones need it for limits
		// on the subtree to count the children.
		_ = writeCgroupFile(filepath.Join(dir, "memory.use_hierarchy"), "1")
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("give cgroup %s to %d:%d: %w", dir, uid, gid, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("give cgroup %s to %d:%d: %w", dir, uid, gid, err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue // child cgroups are the user's already
		}
		if err := os.Chown(filepath.Join(dir, e.Name()), uid, gid); err != nil {
			return fmt.Errorf("give cgroup %s to %d:%d: %w", dir, uid, gid, err)
		}
	}
	return nil
}

// effectiveCpuset is the first non-empty value of file from dir up to the hierarchy root.
func effectiveCpuset(mountpoint, dir, file string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if v := readTrim(filepath.Join(d, file)); v != "" {
			return v
		}
		if d == mountpoint || d == filepath.Dir(d) || !strings.HasPrefix(d, mountpoint) {
			return ""
		}
	}
}

func (d *Delegation) save(file string) error {
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(file, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save cgroup delegation: %w", err)
	}
	d.file = file
	return nil
}

// LoadDelegation reads what DelegateV1 saved; the error wraps fs.ErrNotExist when there is none.
func LoadDelegation() (Delegation, error) { return loadDelegation(paths.CgroupDelegationFile) }

func loadDelegation(file string) (Delegation, error) {
	var d Delegation
	data, err := os.ReadFile(file)
	if err != nil {
		return d, fmt.Errorf("load cgroup delegation: %w", err)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return d, fmt.Errorf("load cgroup delegation %s: %w", file, err)
	}
	d.file = file
	return d, nil
}

// Join moves process pid into every delegated cgroup. The supervisor, as the node's user,
// joins itself before it starts rootlesskit, so that the namespace and everything in it
// start there; a process entered into the namespace later must join, too.
func (d Delegation) Join(pid int) error {
	var errs []error
	for _, dir := range d.Dirs {
		p := filepath.Join(dir.Path, "cgroup.procs")
		if err := writeCgroupFile(p, strconv.Itoa(pid)); err != nil {
			errs = append(errs, fmt.Errorf("join %s: %w", p, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("join delegated cgroups (is the delegation from u7s init still there? run u7s init or start again as root): %w", err)
	}
	return nil
}

// Remove deletes the delegated cgroups bottom-up, with every cgroup the node made in them,
// and the saved delegation. The caller first ends every process in them; a cgroup still in
// use is named with its processes. It is idempotent.
func (d Delegation) Remove() error {
	var errs []error
	for _, dir := range d.Dirs {
		if err := removeTree(dir.Path); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && d.file != "" {
		if err := os.Remove(d.file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeTree rmdirs a cgroup and its children, deepest first (cgroup files cannot be
// unlinked; rmdir of an emptied cgroup takes them).
func removeTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove cgroup %s: %w", root, err)
	}
	sort.SliceStable(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	for _, p := range dirs {
		err := syscall.Rmdir(p)
		switch {
		case err == nil, errors.Is(err, syscall.ENOENT):
		case errors.Is(err, syscall.EBUSY):
			procs := strings.Fields(readTrim(filepath.Join(p, "cgroup.procs")))
			return fmt.Errorf("cgroup %s is still in use (processes %v): stop them first", p, procs)
		default:
			return fmt.Errorf("remove cgroup %s: %w", p, err)
		}
	}
	return nil
}
