package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

type mountFunc func(source, target, fstype string, flags uintptr, data string) error

// MountV1InNamespace runs in the rootlesskit child, as root of its user, cgroup and mount
// namespaces: it puts a tmpfs on /sys/fs/cgroup and mounts each delegated v1 hierarchy
// again below it. In the cgroup namespace each mount shows only the delegated subtree, so
// cri-o, runc and kubelet see it as a whole cgroup v1 host. The cgroup2 mount of a hybrid
// host is left out: runtimes then see plain v1, not a hybrid they may refuse.
func MountV1InNamespace(d Delegation) error {
	return mountV1(d, CgroupRoot, "/proc/self/cgroup", unix.Mount)
}

const mountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

func mountV1(d Delegation, root, procCgroupFile string, mount mountFunc) error {
	if len(d.Dirs) == 0 {
		return errors.New("mount delegated cgroups: the delegation has no hierarchies")
	}
	// Outside a cgroup namespace rooted at the delegated cgroups the mounts would show the
	// whole host hierarchy, with cgroups the node does not own.
	data, err := os.ReadFile(procCgroupFile)
	if err != nil {
		return fmt.Errorf("mount delegated cgroups: %w", err)
	}
	lines := parseProcCgroup(string(data))
	for _, dir := range d.Dirs {
		i := slices.IndexFunc(lines, func(pc procCgroup) bool { return slices.Equal(pc.controllers, dir.Controllers) })
		if i < 0 || lines[i].path != "/" {
			where := "nowhere"
			if i >= 0 {
				where = lines[i].path
			}
			return fmt.Errorf("mount delegated cgroups: in %s this process is at %s, not at the root of a cgroup namespace: "+
				"join the delegation (Delegation.Join) before rootlesskit starts with --cgroupns",
				strings.Join(dir.Controllers, ","), where)
		}
	}
	if err := mount("tmpfs", root, "tmpfs", mountFlags, "mode=755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", root, err)
	}
	for _, dir := range d.Dirs {
		target := filepath.Join(root, dir.MountName)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return fmt.Errorf("mount delegated cgroups: %w", err)
		}
		opts := strings.Join(dir.Controllers, ",")
		if err := mount("cgroup", target, "cgroup", mountFlags, opts); err != nil {
			return fmt.Errorf("mount cgroup %s on %s: %w", opts, target, err)
		}
	}
	// Co-mounted controllers are also reachable by their own names, as on the host.
	for _, dir := range d.Dirs {
		for _, c := range dir.Controllers {
			if c == dir.MountName || strings.HasPrefix(c, "name=") {
				continue
			}
			link := filepath.Join(root, c)
			if _, err := os.Lstat(link); err == nil {
				continue
			}
			if err := os.Symlink(dir.MountName, link); err != nil {
				return fmt.Errorf("mount delegated cgroups: %w", err)
			}
		}
	}
	// Read-only like the host's, so that nothing creates stray directories in it.
	if err := mount("", root, "", unix.MS_REMOUNT|unix.MS_RDONLY|mountFlags, "mode=755"); err != nil {
		return fmt.Errorf("remount %s read-only: %w", root, err)
	}
	return nil
}
