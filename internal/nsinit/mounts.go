package nsinit

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/paths"
)

// realDirs are host directories the node writes, which rootlesskit's copy-up shows as symlinks
// into its hidden bind of the original: runc refuses a container rootfs whose path has a
// symlink in it, so each becomes a real directory again, bound to its original.
var realDirs = []string{paths.Home, paths.RunDir, paths.KubernetesDir}

// Mounts prepares the namespace's file system. /var/log is not copied up by rootlesskit and is
// the host's, which the namespace's root may not write: a tmpfs goes over it, with the node's
// own log directory (u7s-admin's on the host) bound back in.
func Mounts(n *config.Node) error {
	for _, d := range realDirs {
		if err := materialize(d); err != nil {
			return err
		}
	}
	logFD, err := unix.Open(paths.LogDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", paths.LogDir, err)
	}
	defer unix.Close(logFD)
	if err := unix.Mount("tmpfs", "/var/log", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("mounting a tmpfs on /var/log: %w", err)
	}
	if err := bind(fmt.Sprintf("/proc/self/fd/%d", logFD), paths.LogDir); err != nil {
		return err
	}
	// A node whose volumes live elsewhere on the host has them at the one path the provisioner
	// and its PersistentVolumes name.
	if dir := n.VolumesHostDir(); dir != paths.VolumesDir {
		if err := bind(dir, paths.VolumesDir); err != nil {
			return fmt.Errorf("the local volumes' directory: %w", err)
		}
	}
	for _, b := range paths.NamespaceBinds {
		src := filepath.Join(paths.State, b.State)
		mode := os.FileMode(0o755)
		if b.Private {
			mode = 0o700
		}
		if err := os.MkdirAll(src, mode); err != nil {
			return err
		}
		if b.Private { // kept at every start
			if err := os.Chmod(src, mode); err != nil {
				return err
			}
		}
		if err := bind(src, b.Target); err != nil {
			return err
		}
	}
	return nil
}

// bind mounts src on target, replacing a copied-up symlink at target with a directory.
func bind(src, target string) error {
	if fi, err := os.Lstat(target); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if err := os.Remove(target); err != nil {
			return fmt.Errorf("replacing the symlink %s: %w", target, err)
		}
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting %s on %s: %w", src, target, err)
	}
	return nil
}

// materialize replaces a copied-up symlink at path with a bind mount of what it points to.
func materialize(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return err
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("resolving %s: %w", path, err)
	}
	return bind(target, path)
}
