package phases

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/etcdbackup"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/node"
)

// RestoreOptions are the flags of u7s etcd snapshot restore.
type RestoreOptions struct {
	File string
	Yes  bool // no question asked
}

// RestoreData is the run of u7s etcd snapshot restore: the flow Restore's phases share.
type RestoreData struct {
	Ctx context.Context
	O   RestoreOptions
	In  io.Reader
	printer

	node  *config.Node
	owner node.Owner
}

// NewRestoreData loads the control plane to restore; it changes nothing.
func NewRestoreData(ctx context.Context, o RestoreOptions, in io.Reader, out io.Writer) (*RestoreData, error) {
	n, err := ControlPlane("u7s etcd snapshot restore")
	if err != nil {
		return nil, err
	}
	owner, err := node.LookupOwner()
	if err != nil {
		return nil, err
	}
	return &RestoreData{Ctx: ctx, O: o, In: in, printer: printer{out}, node: n, owner: owner}, nil
}

// restorePhase is a phase of the Restore flow.
func restorePhase(name, short string, run func(*RestoreData) error) workflow.Phase {
	return typedPhase(name, short, run)
}

// restoreCheckPhase checks the file before anything stops (a corrupt or foreign file changes
// nothing) and asks unless --yes.
func restoreCheckPhase() workflow.Phase {
	return restorePhase("check", "Check the snapshot (etcd's hash and its database) and ask; change nothing", func(d *RestoreData) error {
		d.step("checking %s", d.O.File)
		info, err := etcdbackup.Check(d.O.File)
		if err != nil {
			return fmt.Errorf("%w; nothing was changed", err)
		}
		fmt.Fprintf(d.Out, "    revision %d, %d keys, %d bytes, written %s\n", info.Revision, info.Keys, info.Size, info.Time.Format(time.RFC3339))
		return confirm(d.In, d.Out, d.O.Yes, fmt.Sprintf("This stops node %s and replaces the cluster's state with the snapshot's: everything written since is lost.\n"+
			"Every other control plane must leave first (u7s reset there) and join again after.", d.node.NodeName))
	})
}

func restoreStopPhase() workflow.Phase {
	return restorePhase("stop", "Stop the node", func(d *RestoreData) error {
		d.step("stopping the node")
		if err := node.StopNode(d.Ctx, d.node.Service); err != nil {
			return fmt.Errorf("stopping the node: %w", err)
		}
		return nil
	})
}

// restoreDataPhase restores into a new data directory and swaps it in, keeping the old one
// beside it. A restore that fails starts the node again on its old data.
func restoreDataPhase() workflow.Phase {
	return restorePhase("restore", "Restore into a new data directory (a new cluster of this member alone); keep the old one beside it", func(d *RestoreData) error {
		if node.SupervisorPID() != 0 {
			return fmt.Errorf("the node runs: its etcd must be stopped first (the phase stop, or u7s stop)")
		}
		n := d.node
		data := etcdbackup.DataDir()
		stamp := time.Now().UTC().Format("20060102T150405Z")
		fresh, old := data+".restore-"+stamp, data+".before-restore-"+stamp
		d.step("restoring into a new data directory, a new cluster of member %s alone", n.NodeName)
		err := etcdbackup.Restore(d.O.File, fresh, etcdbackup.Member{Name: n.NodeName, PeerURL: fmt.Sprintf("https://%s:%d", n.AdvertiseAddress, kubeadmconstants.EtcdListenPeerPort)})
		if err == nil {
			err = chownTree(fresh, d.owner.UID, d.owner.GID)
		}
		if err == nil {
			err = os.Chmod(fresh, 0o700)
		}
		if err != nil {
			os.RemoveAll(fresh)
			d.step("starting the node again on its old data")
			if rerr := startAndWait(d.Ctx, n, d.Out, ""); rerr != nil {
				return fmt.Errorf("restoring: %w; starting the node again with its old data: %v", err, rerr)
			}
			return fmt.Errorf("restoring: %w; the node runs on its old data", err)
		}
		if err := os.Rename(data, old); err != nil {
			os.RemoveAll(fresh)
			return fmt.Errorf("moving the old data directory aside: %w (run u7s start)", err)
		}
		if err := os.Rename(fresh, data); err != nil {
			return fmt.Errorf("moving the restored data directory into place: %w (the old one is %s)", err, old)
		}
		fmt.Fprintf(d.Out, "    the old data directory is kept as %s\n", old)
		return nil
	})
}

func restoreStartPhase() workflow.Phase {
	return restorePhase("start", "Start the node on the restored data and wait until it is Ready", func(d *RestoreData) error {
		d.step("starting the node")
		if err := startAndWait(d.Ctx, d.node, d.Out, ""); err != nil {
			return fmt.Errorf("the node does not come back after the restore: %w (the old data directory is kept beside %s)", err, etcdbackup.DataDir())
		}
		return nil
	})
}

func restoreForgetPhase() workflow.Phase {
	return restorePhase("forget", "Remove the other control planes' Nodes of the snapshot: they join again", func(d *RestoreData) error {
		if err := forgetOtherControlPlanes(d.Ctx, d.node, d.step); err != nil {
			return err
		}
		d.step("restored; every other control plane joins again: u7s join --control-plane (after u7s reset there)")
		return nil
	})
}

// forgetOtherControlPlanes deletes the Node objects of the other control planes that the
// snapshot holds: the restored member is the cluster's only one, the others join again, and
// kubeadm refuses to join a node whose name is taken by a Node that still looks Ready.
func forgetOtherControlPlanes(ctx context.Context, n *config.Node, step func(string, ...any)) error {
	cs, err := kube.AdminAt(fmt.Sprintf("%s:%d", n.AdvertiseAddress, n.APIServerPort))
	if err != nil {
		return err
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: kubeadmconstants.LabelNodeRoleControlPlane})
	if err != nil {
		return fmt.Errorf("listing the control planes of the restored cluster: %w", err)
	}
	for _, o := range nodes.Items {
		if o.Name == n.NodeName {
			continue
		}
		step("removing the Node %s of the snapshot: a control plane no longer of this cluster until it joins again", o.Name)
		if err := cs.CoreV1().Nodes().Delete(ctx, o.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the Node %s: %w", o.Name, err)
		}
	}
	return nil
}

// chownTree hands every file under dir to uid:gid (the restore ran as root; etcd runs as the
// namespace's root, which is u7s-admin).
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}
