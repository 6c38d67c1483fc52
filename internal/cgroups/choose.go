package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Choose picks the node's cgroup mode, as root at init or join, and makes what it needs:
//   - "none" asked for: None;
//   - cgroup v1 (or hybrid): a subtree of every hierarchy under this process's cgroup,
//     delegated to uid (Prepare makes it again at every start: cgroups do not survive a reboot);
//   - cgroup v2 where systemd runs the node: V2Delegated, from the unit's Delegate=yes (the
//     supervisor checks it when it starts and refuses to run a node whose limits would be
//     silently off);
//   - cgroup v2 without systemd: what this process's cgroup gives, usually None.
func Choose(want string, systemd bool, uid, gid int) (Mode, error) {
	if want == "none" {
		return None, nil
	}
	layout, err := Detect()
	if err != nil {
		return "", err
	}
	if layout.IsV1() {
		if _, err := DelegateV1(layout, delegationName, uid, gid); err != nil {
			return "", fmt.Errorf("delegating cgroup v1 subtrees: %w (use --cgroup-mode=none to run without pod limits)", err)
		}
		return V1Delegated, nil
	}
	if systemd {
		return V2Delegated, nil
	}
	mode, err := DetectV2Delegation(layout, uid)
	if err != nil {
		fmt.Fprintf(os.Stderr, "warning: %v\n", err)
	}
	return mode, nil
}

// delegationName is the node's cgroup in every v1 hierarchy.
const delegationName = "u7s"

// Prepare makes the v1 delegation again before the node starts (as root: the unit's
// ExecStartPre, or u7s start): after a reboot the saved subtrees are gone. Where they all
// still exist they are kept. Other modes need nothing.
func Prepare(mode Mode) error {
	if mode != V1Delegated {
		return nil
	}
	d, loadErr := LoadDelegation()
	if loadErr != nil && !errors.Is(loadErr, fs.ErrNotExist) {
		return loadErr
	}
	complete := loadErr == nil && len(d.Dirs) > 0
	for _, dir := range d.Dirs {
		if _, err := os.Stat(filepath.Join(dir.Path, "cgroup.procs")); err != nil {
			complete = false
		}
	}
	if complete {
		return nil
	}
	layout, err := Detect()
	if err != nil {
		return err
	}
	uid, gid := d.UID, d.GID
	if loadErr != nil || uid == 0 {
		return errors.New("no saved cgroup delegation: run u7s reset and init or join again, or use --cgroup-mode=none")
	}
	_ = d.Remove() // what is left of the old subtrees (the file is written anew)
	if _, err := DelegateV1(layout, delegationName, uid, gid); err != nil {
		return fmt.Errorf("delegating cgroup v1 subtrees again: %w", err)
	}
	return nil
}
