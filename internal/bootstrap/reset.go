package bootstrap

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
)

// Reset stops the node and removes everything init or join made, leaving the host as it was:
// no u7s-admin process, no namespace, no state. Safe to run twice, and on a host that never
// ran init.
func Reset(out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("u7s reset must run as root: try sudo u7s reset")
	}
	var errs []error
	step(out, "stopping the node")
	if err := node.Stop(30 * time.Second); err != nil {
		errs = append(errs, fmt.Errorf("stopping the supervisor: %w", err))
	}
	if n := killUserProcesses(); n > 0 {
		fmt.Fprintf(out, "    killed %d leftover process(es) of %s\n", n, paths.User)
	}
	step(out, "removing the cluster state")
	for _, p := range []string{paths.State, paths.RunDir, paths.LogDir, paths.KubernetesDir,
		config.Path, KubeadmInitConfig} {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", p, err))
		}
	}
	step(out, "removing the cgroup delegation")
	if d, err := cgroups.LoadDelegation(); err == nil {
		if err := d.Remove(); err != nil {
			errs = append(errs, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	step(out, "restoring sysctls and removing the user %s", paths.User)
	if err := host.RestoreSysctls(); err != nil {
		errs = append(errs, err)
	}
	if err := host.RemoveModulesDir(); err != nil {
		errs = append(errs, err)
	}
	if err := host.RestoreTun(); err != nil {
		errs = append(errs, err)
	}
	if err := host.RemoveUser(); err != nil {
		errs = append(errs, err)
	}
	// The config dir goes too if nothing else is left in it.
	_ = os.Remove(paths.ConfigDir)
	return errors.Join(errs...)
}

// killUserProcesses kills every process still owned by the node's user or one of its
// subordinate ids (containers that escaped the namespace's end, which should not happen).
func killUserProcesses() int {
	o, err := node.LookupOwner()
	if err != nil {
		return 0
	}
	sub, _ := host.SubUIDRanges(paths.User, o.UID)
	owned := func(uid int) bool {
		return uid == o.UID || slices.ContainsFunc(sub, func(r host.IDRange) bool { return r.Contains(uid) })
	}
	killed := 0
	for range 3 {
		ents, _ := os.ReadDir("/proc")
		found := 0
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			var st unix.Stat_t
			if unix.Stat("/proc/"+e.Name(), &st) != nil {
				continue
			}
			if owned(int(st.Uid)) {
				_ = unix.Kill(pid, unix.SIGKILL)
				found++
			}
		}
		if found == 0 {
			break
		}
		killed += found
		time.Sleep(500 * time.Millisecond)
	}
	return killed
}
