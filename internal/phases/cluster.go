package phases

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/flannel"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/localpath"
	"github.com/u7s/u7s/internal/metricsserver"
	"github.com/u7s/u7s/internal/netpol"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/registry"
	"github.com/u7s/u7s/internal/version"
)

// networkPhase gives flannel this node's public address: the host's, where the other nodes'
// VXLAN packets arrive (8472/udp is forwarded into the namespace), not the namespace's own that
// every node has; with install (init: the first control plane) it installs flannel.
func networkPhase(install bool) workflow.Phase {
	short := "Publish this node's address to flannel"
	if install {
		short = "Install flannel and publish this node's address to it"
	}
	return phase("network", short, changesHost, func(d *Data) error {
		n, err := d.Node()
		if err != nil {
			return err
		}
		cs, err := kube.Node()
		if err != nil {
			return err
		}
		ip, err := netip.ParseAddr(n.AdvertiseAddress)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(d.Ctx, n.Timeout())
		defer cancel()
		if err := waitNodeObject(ctx, cs, n.NodeName); err != nil {
			return err
		}
		if err := flannel.SetNodePublicIP(ctx, cs, n.NodeName, ip); err != nil {
			return fmt.Errorf("annotating node %s with its public address: %w", n.NodeName, err)
		}
		if !install {
			return nil
		}
		d.step("installing flannel (%s)", n.FlannelImage)
		admin, err := kube.Admin()
		if err != nil {
			return err
		}
		if err := flannel.Apply(ctx, admin, flannelOptions(n, n.FlannelImage)); err != nil {
			return fmt.Errorf("installing flannel: %w", err)
		}
		return nil
	})
}

// policyPhase installs NetworkPolicy enforcement (init: the first control plane): a DaemonSet
// whose pod on each node, this one and every node that joins, writes the policies' rules into
// that node's network namespace. The wait phase after it sees its pod run, or says why not.
func policyPhase() workflow.Phase {
	return phase("policy", "Install NetworkPolicy enforcement (kube-router's firewall) for every node", changesHost, func(d *Data) error {
		n, err := d.Node()
		if err != nil {
			return err
		}
		d.step("installing NetworkPolicy enforcement (%s)", n.NetpolImage)
		admin, err := kube.Admin()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(d.Ctx, n.Timeout())
		defer cancel()
		return netpol.Apply(ctx, admin, netpolOptions(n, n.NetpolImage))
	})
}

// addonsPhase installs what users expect of a fresh cluster beside the network (init): the
// default StorageClass, whose provisioner runs on every node, and the Metrics API. The wait
// phase after it sees their pods on this node run, metrics-server's readiness included (it is
// ready once it has read the kubelets' metrics over TLS).
func addonsPhase() workflow.Phase {
	return phase("addons", "Install the default StorageClass (local volumes) and the Metrics API (metrics-server)", changesHost, func(d *Data) error {
		n, err := d.Node()
		if err != nil {
			return err
		}
		res, err := d.resolution()
		if err != nil {
			return err
		}
		admin, err := kube.Admin()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(d.Ctx, n.Timeout())
		defer cancel()
		return applyAddons(ctx, admin, n, res, false, d.step)
	})
}

// applyAddons applies the add-ons node n's cluster has (init: all but those opted out; upgrade:
// those it finds) with this release's images.
func applyAddons(ctx context.Context, cs kubernetes.Interface, n *config.Node, res registry.Resolution, upgrade bool, step func(string, ...any)) error {
	if !n.NoLocalStorage {
		img := res.LocalPathImage(version.Pinned)
		switch {
		case img == "":
			step("no default StorageClass: the native registry has no u7s-local-path image; install a provisioner of your own")
		case upgrade && !present(ctx, cs.AppsV1().DaemonSets(localpath.Namespace), localpath.DaemonSetName):
			step("no default StorageClass of u7s in the cluster (made with --no-local-storage or before u7s had one): left so")
		default:
			step("installing the default StorageClass %s (local volumes in %s of each node; %s)", localpath.StorageClassName, paths.VolumesDir, img)
			if err := localpath.Apply(ctx, cs, localpath.Options{Image: img, APIServer: n.Endpoint, Upgrade: upgrade}); err != nil {
				return err
			}
		}
	}
	if !n.NoMetricsServer {
		img := res.MetricsServerImage(version.Pinned)
		if upgrade && !present(ctx, cs.AppsV1().Deployments(metricsserver.Namespace), metricsserver.DeploymentName) {
			step("no Metrics API of u7s in the cluster (made with --no-metrics-server or before u7s had one): left so")
			return nil
		}
		step("installing the Metrics API (%s)", img)
		if err := metricsserver.Apply(ctx, cs, metricsserver.Options{Image: img}); err != nil {
			return err
		}
	}
	return nil
}

// present reports whether the object name exists (an error other than NotFound counts as
// present, so that an upgrade tries and says what fails).
func present[T any](ctx context.Context, c interface {
	Get(context.Context, string, metav1.GetOptions) (T, error)
}, name string) bool {
	_, err := c.Get(ctx, name, metav1.GetOptions{})
	return !apierrors.IsNotFound(err)
}

// flannelOptions is flannel in node n's cluster, with image: init's and each upgrade's.
func flannelOptions(n *config.Node, image string) flannel.Options {
	return flannel.Options{Image: image, PodCIDR: n.PodCIDR, APIServer: n.Endpoint}
}

// netpolOptions is NetworkPolicy enforcement in node n's cluster, with image.
func netpolOptions(n *config.Node, image string) netpol.Options {
	return netpol.Options{Image: image, ServiceCIDR: n.ServiceCIDR, APIServer: n.Endpoint}
}

// waitNodeObject waits until the kubelet has registered the node.
func waitNodeObject(ctx context.Context, cs kubernetes.Interface, name string) error {
	err := kube.Poll(ctx, time.Second, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("node %s did not register: see %s/kubelet.log", name, paths.LogDir)
	}
	return nil
}

// waitPhase waits until the node is Ready with its pods running.
func waitPhase() workflow.Phase {
	return phaseOf("wait", "Wait until the node is Ready and every pod on it runs", needsNode, func(d nodeData) error {
		n, err := d.Node()
		if err != nil {
			return err
		}
		cs, err := kube.Node()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(d.context(), n.Timeout())
		defer cancel()
		d.step("waiting for node %s to be Ready and its pods to run", n.NodeName)
		return kube.WaitNodeReady(ctx, cs, n.NodeName, d.out())
	})
}

// summaryPhase says what was made and how to use the node, and with printJoin (init) how
// others join.
func summaryPhase(printJoin bool) workflow.Phase {
	short := "Print how to use the node"
	if printJoin {
		short = "Print how to use the node and the u7s join commands"
	}
	return phase("summary", short, needsNode, func(d *Data) error {
		n, err := d.Node()
		if err != nil {
			return err
		}
		fmt.Fprintf(d.Out, "\nNode %s is Ready (%s; cgroup mode %s: %s).\n", n.NodeName, n.Role, n.Cgroup, n.Cgroup.Description())
		if n.Service {
			fmt.Fprintf(d.Out, "It runs as the systemd unit u7s.service (journalctl -u u7s, systemctl status u7s).\n")
		}
		if n.Role == config.ControlPlane {
			fmt.Fprintf(d.Out, "Use the cluster from this host as root:\n  export KUBECONFIG=%s\n  kubectl get nodes\n", paths.AdminKubeconfig)
		}
		if !printJoin {
			return nil
		}
		hash, err := kubeadm.CACertHash()
		if err != nil {
			return err
		}
		fmt.Fprintf(d.Out, "\n%s", joinCommands(n.Endpoint, d.token, hash, d.certKey, n.ImageSigningKey != ""))
		return nil
	})
}
