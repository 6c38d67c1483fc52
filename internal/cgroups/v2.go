package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// requiredV2 are the controllers the node needs delegated on cgroup v2 (io and cpuset help
// but are not needed).
var requiredV2 = []string{"cpu", "memory", "pids"}

// DetectV2Delegation says whether, on cgroup v2, this process's cgroup is delegated to uid:
// it has the cpu, memory and pids controllers and uid may write it. Call it in the process
// that starts rootlesskit (the supervisor), as the node's user. It returns V2Delegated and
// nil, or None and an error that says why and how to fix it (the node runs then without
// limits, so the error is for the log, not fatal).
func DetectV2Delegation(l Layout, uid int) (Mode, error) {
	const fix = "run u7s from a systemd service with Delegate=yes (the u7s unit has it)"
	if !l.Unified || l.V2 == nil {
		return None, fmt.Errorf("the host does not run cgroup v2 alone (%s): %s", l, "boot with systemd.unified_cgroup_hierarchy=1 for cgroup v2, or delegate v1 subtrees as root")
	}
	dir := l.V2.Dir
	if dir == "" {
		return None, fmt.Errorf("this process's cgroup %s is not visible under %s: %s", l.V2.Cgroup, l.V2.Mountpoint, fix)
	}
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return None, fmt.Errorf("read the controllers of cgroup %s: %w", dir, err)
	}
	have := strings.Fields(string(data))
	var missing []string
	for _, c := range requiredV2 {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return None, fmt.Errorf("controllers %s are not delegated to cgroup %s (it has %q): %s, or Delegate=%s",
			strings.Join(missing, ", "), dir, have, fix, strings.Join(append(slices.Clone(requiredV2), "cpuset", "io"), " "))
	}
	if uid != 0 {
		for _, p := range []string{dir, filepath.Join(dir, "cgroup.procs"), filepath.Join(dir, "cgroup.subtree_control")} {
			fi, err := os.Stat(p)
			if err != nil {
				return None, fmt.Errorf("inspect cgroup %s: %w", dir, err)
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok || int(st.Uid) != uid || fi.Mode().Perm()&0o200 == 0 {
				return None, fmt.Errorf("%s is not writable by uid %d: %s", p, uid, fix)
			}
		}
	}
	return V2Delegated, nil
}
