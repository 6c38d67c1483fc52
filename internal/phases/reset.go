package phases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/localpath"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/service"
	"github.com/u7s/u7s/systemd"
)

// ResetData is the run of u7s reset (and of a failed init's or join's undo): what Reset's
// phases share.
type ResetData struct {
	Ctx context.Context
	printer
}

// NewResetData starts a reset; it changes nothing.
func NewResetData(ctx context.Context, out io.Writer) (*ResetData, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("u7s reset must run as root: try sudo u7s reset")
	}
	return &ResetData{Ctx: ctx, printer: printer{out}}, nil
}

// leavePhase takes the node out of the cluster while it still runs: a control plane's etcd
// member is removed first (so that the others keep quorum), then its Node object.
func leavePhase() workflow.Phase {
	return typedPhase("leave", "Leave the cluster: remove this control plane's etcd member, then the Node object", func(d *ResetData) error {
		n, err := config.Load()
		if err != nil {
			return nil // never made, or half made: nothing to leave
		}
		ctx, cancel := context.WithTimeout(d.Ctx, time.Minute)
		defer cancel()
		// The Node first: once this control plane's etcd member is gone, its API server
		// (which the balancer may pick) no longer answers.
		if cs, err := kube.Admin(); err == nil {
			deleteNode(d, ctx, cs, n.NodeName)
		} else if cs, err := kube.Node(); err == nil {
			deleteNode(d, ctx, cs, n.NodeName)
		}
		if n.Role == config.ControlPlane {
			if _, err := os.Stat(paths.AdminKubeconfig); err == nil {
				d.step("removing this control plane's etcd member")
				if err := kubeadm.RemoveEtcdMember(n); err != nil {
					fmt.Fprintf(d.Out, "    warning: %v\n", err)
				}
			}
		}
		return nil
	})
}

func deleteNode(d *ResetData, ctx context.Context, cs kubernetes.Interface, name string) {
	d.step("deleting the Node %s", name)
	err := cs.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	switch {
	case err == nil, apierrors.IsNotFound(err):
	case apierrors.IsForbidden(err):
		fmt.Fprintf(d.Out, "    a worker may not delete its Node: on a control plane, run kubectl delete node %s\n", name)
	default:
		fmt.Fprintf(d.Out, "    warning: deleting the Node %s: %v\n", name, err)
	}
}

// stopPhase stops the node, and disables its unit.
func stopPhase() workflow.Phase {
	return typedPhase("stop", "Stop the node (the systemd unit, or the detached supervisor) and disable its unit", func(d *ResetData) error {
		d.step("stopping the node")
		var errs []error
		if service.Systemd() {
			if err := service.Uninstall(d.Ctx, append(append(append(systemd.Every, systemd.Watch...), systemd.ControlPlane...), systemd.Node)...); err != nil {
				errs = append(errs, err)
			}
		}
		if err := node.Stop(node.StopTimeout); err != nil {
			errs = append(errs, fmt.Errorf("stopping the supervisor: %w", err))
		}
		if n := killUserProcesses(); n > 0 {
			d.detail("killed %d leftover process(es) of %s", n, paths.User)
		}
		return errors.Join(errs...)
	})
}

// cleanupPhase undoes what init or join recorded, and nothing else.
func cleanupPhase() workflow.Phase {
	return typedPhase("cleanup", "Undo what init or join recorded: cgroups, sysctls, /dev/net/tun, the user, the files they made", func(d *ResetData) error {
		var errs []error
		d.step("removing the cgroup delegation")
		if dl, err := cgroups.LoadDelegation(); err == nil {
			if err := dl.Remove(); err != nil {
				errs = append(errs, err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		d.step("restoring sysctls and removing the user %s", paths.User)
		for _, f := range []func() error{host.RestoreSysctls, host.RemoveModulesDir, host.RestoreTun, host.RemoveUser} {
			if err := f(); err != nil {
				errs = append(errs, err)
			}
		}
		volumes := paths.VolumesDir
		if n, err := config.Load(); err == nil {
			volumes = n.VolumesHostDir()
		}
		d.step("removing the local volumes in %s (those of Retain claims stay)", volumes)
		kept, err := localpath.Cleanup(volumes, d.out())
		if err != nil {
			errs = append(errs, err)
		}
		if len(kept) > 0 {
			d.detail("kept what is listed above in %s: its files belong to the ids of %s; remove them when their data is no longer needed", volumes, paths.User)
		}
		d.step("removing the files init or join made")
		if err := host.RemoveRecorded(kept...); err != nil {
			errs = append(errs, err)
		}
		if service.Systemd() {
			_ = service.Reload(d.Ctx)
		}
		// The coordinated-reboot agent's files (made after init, so not recorded), then the
		// config dir too if nothing else is left in it.
		_ = os.Remove(paths.MaintenanceMarker)
		_ = os.Remove(paths.MaintenanceAsked)
		_ = os.Remove(paths.ConfigDir)
		return errors.Join(errs...)
	})
}

// killUserProcesses kills every process of this host's own PID namespace still owned by the
// node's user or one of its subordinate ids (what outlived the supervisor: slirp4netns, a
// container that escaped the namespace's end, which should not happen). The node's namespace has
// a PID namespace of its own, whose processes end with its init; a process in another PID
// namespace belongs to another container of the host (a systemd-nspawn machine, say), whose users
// may have the same ids, and is left alone.
func killUserProcesses() int {
	o, err := node.LookupOwner()
	if err != nil {
		return 0
	}
	sub, _ := host.SubUIDRanges(paths.User, o.UID)
	owned := func(uid int) bool {
		return uid == o.UID || slices.ContainsFunc(sub, func(r host.IDRange) bool { return r.Contains(uid) })
	}
	ourPIDNS, _ := os.Readlink("/proc/self/ns/pid")
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
			if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err != nil || ns != ourPIDNS {
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

// Undo is what a failed init or join (flow) runs: reset's phases. A control plane whose join
// failed after kubeadm added its etcd member must leave, or the others' quorum counts a dead
// member.
func Undo(ctx context.Context, flow string) error {
	d := &ResetData{Ctx: ctx, printer: printer{discard{}}}
	ps := Reset()
	if flow == FlowInit {
		// A failed init leaves no cluster that would keep its etcd member or its Node: there is
		// nothing to leave, and asking its dead API server would only wait.
		ps = slices.DeleteFunc(ps, func(p workflow.Phase) bool { return p.Name == leavePhase().Name })
	}
	var errs []error
	for _, p := range ps {
		if err := p.Run(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
