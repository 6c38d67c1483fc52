package phases

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// RestoreEtcd puts a control plane's etcd back to a snapshot: it checks the file before it
// stops anything, asks, stops the node, restores into a new data directory with a new cluster
// identity (this member alone), keeps the old one beside it, and starts the node again. Other
// control planes leave before (u7s reset) and join again after (u7s join --control-plane):
// their members belong to the old cluster; their Nodes in the snapshot are removed.
func RestoreEtcd(ctx context.Context, o RestoreOptions, in io.Reader, out io.Writer) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("u7s etcd snapshot restore must run as root on a control plane")
	}
	n, err := config.Load()
	if err != nil {
		return err
	}
	if n.Role != config.ControlPlane {
		return fmt.Errorf("this node is a %s: restore on a control plane", n.Role)
	}
	step := func(f string, a ...any) { fmt.Fprintf(out, "[u7s] "+f+"\n", a...) }
	step("checking %s", o.File)
	info, err := etcdbackup.Check(o.File)
	if err != nil {
		return fmt.Errorf("%w; nothing was changed", err)
	}
	fmt.Fprintf(out, "    revision %d, %d keys, %d bytes, written %s\n", info.Revision, info.Keys, info.Size, info.Time.Format(time.RFC3339))
	if !o.Yes {
		fmt.Fprintf(out, "This stops node %s and replaces the cluster's state with the snapshot's: everything written since is lost.\n"+
			"Every other control plane must leave first (u7s reset there) and join again after. Type yes to go on: ", n.NodeName)
		answer, _ := bufio.NewReader(in).ReadString('\n')
		if strings.TrimSpace(answer) != "yes" {
			return fmt.Errorf("not confirmed; nothing was changed")
		}
	}
	owner, err := node.LookupOwner()
	if err != nil {
		return err
	}
	data := etcdbackup.DataDir()
	stamp := time.Now().UTC().Format("20060102T150405Z")
	fresh, old := data+".restore-"+stamp, data+".before-restore-"+stamp

	step("stopping the node")
	if err := node.StopNode(ctx, n.Service); err != nil {
		return fmt.Errorf("stopping the node: %w", err)
	}
	restart := func() error {
		step("starting the node")
		return startAndWait(ctx, n, owner, out)
	}
	step("restoring into a new data directory, a new cluster of member %s alone", n.NodeName)
	err = etcdbackup.Restore(o.File, fresh, etcdbackup.Member{Name: n.NodeName, PeerURL: fmt.Sprintf("https://%s:2380", n.AdvertiseAddress)})
	if err == nil {
		err = chownTree(fresh, owner.UID, owner.GID)
	}
	if err == nil {
		err = os.Chmod(fresh, 0o700)
	}
	if err != nil {
		os.RemoveAll(fresh)
		if rerr := restart(); rerr != nil {
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
	fmt.Fprintf(out, "    the old data directory is kept as %s\n", old)
	if err := restart(); err != nil {
		return fmt.Errorf("the node does not come back after the restore: %w (the old data directory is %s)", err, old)
	}
	if err := forgetOtherControlPlanes(ctx, n, step); err != nil {
		return err
	}
	step("restored: etcd is at revision %d of the snapshot (bumped); every other control plane joins again: u7s join --control-plane (after u7s reset there)", info.Revision)
	return nil
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

// Restart stops the node and starts it again, waiting for it to be Ready.
func Restart(ctx context.Context, n *config.Node, out io.Writer) error {
	owner, err := node.LookupOwner()
	if err != nil {
		return err
	}
	if err := node.StopNode(ctx, n.Service); err != nil {
		return fmt.Errorf("stopping the node: %w", err)
	}
	return startAndWait(ctx, n, owner, out)
}

func startAndWait(ctx context.Context, n *config.Node, owner node.Owner, out io.Writer) error {
	if err := Prepare(n); err != nil {
		return err
	}
	if _, err := node.Start(ctx, n.Service, owner); err != nil {
		return err
	}
	cs, err := kube.Node()
	if n.Role == config.ControlPlane {
		// Its own API server: through a balancer another control plane could answer.
		cs, err = kube.AdminAt(fmt.Sprintf("%s:%d", n.AdvertiseAddress, n.APIServerPort))
	}
	if err != nil {
		return err
	}
	return kube.WaitNodeReady(ctx, cs, n.NodeName, out)
}
