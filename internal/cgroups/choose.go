package cgroups

import (
	"fmt"
	"os"
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
