package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Driver is what a cgroup mode does at each step of a node's life, chosen once from the node's
// mode (as rootlesskit chooses its network and port drivers), so that no other package switches
// on the mode.
type Driver interface {
	Mode() Mode
	// Description says what the mode means for the cluster's users.
	Description() string
	// Prepare runs as root before every start (the unit's ExecStartPre=+, or u7s start).
	Prepare() error
	// EnterSupervisor runs in the supervisor (the node's user) before the namespace starts. It
	// returns the child group the namespace's processes move into on cgroup v2 ("" for none).
	EnterSupervisor(uid int) (evacuate string, err error)
	// EnterNamespace runs in the namespace's first process, before cri-o starts.
	EnterNamespace() error
	// CrioRootless: cri-o runs in its rootless mode (_CRIO_ROOTLESS), for a node without
	// delegated cgroups. That mode empties every container's cgroup path (cri-o's
	// makeOCIConfigurationRootless), so runc puts it beside kubepods, not in its pod.
	CrioRootless() bool
	// DropInfraContainer: cri-o may run pods without an infra container.
	DropInfraContainer() bool
	// Limits: the kubelet makes per-QoS cgroups and enforces node allocatable.
	Limits() bool
}

// For is the driver of mode m.
func For(m Mode) (Driver, error) {
	switch m {
	case V1Delegated:
		return v1Delegated{}, nil
	case V2Delegated:
		return v2Delegated{}, nil
	case None:
		return none{}, nil
	}
	return nil, fmt.Errorf("unknown cgroup mode %q (want %s, %s or %s): run u7s reset and init or join again", m, V2Delegated, V1Delegated, None)
}

// Must is For where the mode is one of the three (a Mode constant, or one read and checked).
func Must(m Mode) Driver {
	d, err := For(m)
	if err != nil {
		panic(err)
	}
	return d
}

// v1Delegated: cgroup v1 (or hybrid), a subtree of every hierarchy delegated by root to the
// node's user, joined by the supervisor and mounted in the namespace.
type v1Delegated struct{}

func (v1Delegated) Mode() Mode { return V1Delegated }
func (v1Delegated) Description() string {
	return "cgroup v1, subtrees delegated by root: limits enforced"
}

// Prepare makes the v1 delegation again: after a reboot the saved subtrees are gone. Where they
// all still exist they are kept.
func (v1Delegated) Prepare() error {
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

func (v1Delegated) EnterSupervisor(int) (string, error) {
	d, err := LoadDelegation()
	if err != nil {
		return "", fmt.Errorf("loading the cgroup v1 delegation (made by root at init): %w", err)
	}
	if err := d.Join(os.Getpid()); err != nil {
		return "", fmt.Errorf("joining the delegated cgroups: %w", err)
	}
	return "", nil
}

func (v1Delegated) EnterNamespace() error {
	d, err := LoadDelegation()
	if err != nil {
		return fmt.Errorf("loading the cgroup v1 delegation: %w", err)
	}
	if err := MountV1InNamespace(d); err != nil {
		return fmt.Errorf("mounting the delegated cgroup v1 hierarchies: %w", err)
	}
	return nil
}

func (v1Delegated) CrioRootless() bool { return false }

// DropInfraContainer: on cgroup v1 a dropped infra container makes cri-o create its own cgroup
// at the hierarchy root, which the node's user may not do.
func (v1Delegated) DropInfraContainer() bool { return false }
func (v1Delegated) Limits() bool             { return true }

// v2Delegated: cgroup v2, the unit's cgroup delegated to the node's user by systemd
// (Delegate=yes).
type v2Delegated struct{}

func (v2Delegated) Mode() Mode          { return V2Delegated }
func (v2Delegated) Description() string { return "cgroup v2 with delegation: pod limits enforced" }
func (v2Delegated) Prepare() error      { return nil }

// EnterSupervisor refuses a start without the delegation init chose the mode for, rather than
// a node whose pod limits are silently off.
func (v2Delegated) EnterSupervisor(uid int) (string, error) {
	layout, err := Detect()
	if err != nil {
		return "", err
	}
	if _, err := DetectV2Delegation(layout, uid); err != nil {
		return "", fmt.Errorf("the node was set up for cgroup v2 delegation, but: %w", err)
	}
	return "u7s-supervisor", nil
}

func (v2Delegated) EnterNamespace() error { return nil }

// CrioRootless is false as on v1: the delegated subtree is the namespace's to write, and with
// rootless mode the containers left their pods' cgroups. What rootless mode would change
// besides is done otherwise: runc skips the device filter in a user namespace, u7s-runc clamps
// oom_score_adj, and AppArmor is unconfined in crio.conf.
func (v2Delegated) CrioRootless() bool       { return false }
func (v2Delegated) DropInfraContainer() bool { return true }
func (v2Delegated) Limits() bool             { return true }

// none: no delegation; pods run without limits.
type none struct{}

func (none) Mode() Mode { return None }
func (none) Description() string {
	return "no delegation: pods run without resource limits"
}
func (none) Prepare() error                      { return nil }
func (none) EnterSupervisor(int) (string, error) { return "", nil }
func (none) EnterNamespace() error               { return nil }
func (none) CrioRootless() bool                  { return true }
func (none) DropInfraContainer() bool            { return false }
func (none) Limits() bool                        { return false }
