package host

import (
	"fmt"
	"os"
)

const tunDevice = "/dev/net/tun"

// EnsureTun makes /dev/net/tun usable by unprivileged users (mode 0666, as udev sets it on
// most distributions): slirp4netns, run as the node's user, creates its tap device with it.
// The previous mode is recorded for RestoreTun.
func EnsureTun() error {
	s := defaultSystem()
	fi, err := os.Stat(s.path(tunDevice))
	if err != nil {
		return fmt.Errorf("%s: %w (load the tun module: modprobe tun)", tunDevice, err)
	}
	mode := fi.Mode().Perm()
	if mode&0o006 == 0o006 {
		return nil
	}
	if err := s.updateState(func(st *State) {
		if st.TunMode == 0 {
			st.TunMode = mode
		}
	}); err != nil {
		return err
	}
	if err := os.Chmod(s.path(tunDevice), 0o666); err != nil {
		return fmt.Errorf("opening %s to unprivileged users: %w", tunDevice, err)
	}
	return nil
}

// RestoreTun puts back the mode EnsureTun changed.
func RestoreTun() error {
	s := defaultSystem()
	st, err := s.loadState()
	if err != nil || st.TunMode == 0 {
		return err
	}
	if err := os.Chmod(s.path(tunDevice), st.TunMode); err != nil {
		return fmt.Errorf("restoring the mode of %s: %w", tunDevice, err)
	}
	return s.updateState(func(st *State) { st.TunMode = 0 })
}

// ModulesDir is where kube-proxy's DaemonSet (kubeadm's) mounts the kernel modules from; a
// kernel with everything built in may have none, and the node cannot create it.
const ModulesDir = "/lib/modules"

// EnsureModulesDir creates an empty /lib/modules if the host has none, recorded for reset.
func EnsureModulesDir() error {
	s := defaultSystem()
	if _, err := os.Stat(s.path(ModulesDir)); err == nil {
		return nil
	}
	if err := s.updateState(func(st *State) { st.CreatedModulesDir = true }); err != nil {
		return err
	}
	return os.MkdirAll(s.path(ModulesDir), 0o755)
}

// RemoveModulesDir removes /lib/modules if EnsureModulesDir created it and it is still empty.
func RemoveModulesDir() error {
	s := defaultSystem()
	st, err := s.loadState()
	if err != nil || !st.CreatedModulesDir {
		return err
	}
	if err := os.Remove(s.path(ModulesDir)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("removing %s, which u7s init created: %w", ModulesDir, err)
	}
	return s.updateState(func(st *State) { st.CreatedModulesDir = false })
}
