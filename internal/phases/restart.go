package phases

import (
	"context"
	"fmt"
	"io"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/watch"
)

// Restart is the one restart sequence of the flows that restart a node (upgrade, certs renew;
// restore starts one it stopped): stop it, then startAndWait. kubelet, if not "", is the kubelet
// version the node must come back with.
func Restart(ctx context.Context, n *config.Node, out io.Writer, kubelet string) error {
	if err := node.StopNode(ctx, n.Service); err != nil {
		return fmt.Errorf("stopping the node: %w", err)
	}
	return startAndWait(ctx, n, out, kubelet)
}

// startAndWait prepares the host (what the unit's ExecStartPre does), starts the node and waits
// until it is Ready with its pods running, and with kubelet's version when that is not "".
func startAndWait(ctx context.Context, n *config.Node, out io.Writer, kubelet string) error {
	owner, err := node.LookupOwner()
	if err != nil {
		return err
	}
	if err := Prepare(n); err != nil {
		return err
	}
	started := time.Now()
	if _, err := node.Start(ctx, n.Service, owner, n.Timeout()); err != nil {
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
	// The node's step timeout: a slow host (an emulated VM, a small board) is not given up on;
	// the wait prints what it waits for meanwhile.
	ctx, cancel := context.WithTimeout(ctx, n.Timeout())
	defer cancel()
	if kubelet != "" {
		if err := waitKubelet(ctx, cs, n.NodeName, kubelet); err != nil {
			return err
		}
	}
	if err := kube.WaitNodeReadySince(ctx, cs, n.NodeName, started, out); err != nil {
		return err
	}
	// The flows that restart a node (upgrade, certs renew, restore) changed its files: they are
	// the watch's baseline now. A failure is a warning: the node runs, and the watch reports the
	// flow's changes with the command that records them.
	if err := watch.RecordNodeBaseline(); err != nil {
		fmt.Fprintf(out, "    warning: recording the watch's baseline: %v (run u7s check all --record-baseline)\n", err)
	}
	return nil
}

// waitKubelet waits until the node's kubelet reports version v, Ready by a heartbeat of its own.
func waitKubelet(ctx context.Context, cs kubernetes.Interface, name, v string) error {
	got := "unknown"
	err := kube.Poll(ctx, 2*time.Second, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		got = n.Status.NodeInfo.KubeletVersion
		return got == v && kube.NodeReady(n), nil
	})
	if err != nil {
		return fmt.Errorf("node %s did not come back Ready with kubelet %s (it reports %s): see %s/kubelet.log", name, v, got, paths.LogDir)
	}
	return nil
}
