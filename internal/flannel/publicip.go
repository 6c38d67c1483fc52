package flannel

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/u7s/u7s/internal/apply"
)

// PublicIPOverwriteAnnotation on a Node makes flanneld (--kube-subnet-mgr) publish that
// address as the node's flannel public IP, the VXLAN endpoint other nodes send to. A
// rootless node needs it: its own address is slirp4netns's 10.0.2.100 on every node, while
// other nodes reach it at the host's address, from which rootlesskit forwards UDP 8472.
// flanneld reads it only when it starts (when it takes its lease).
const PublicIPOverwriteAnnotation = "flannel.alpha.coreos.com/public-ip-overwrite"

// SetNodePublicIP sets node's PublicIPOverwriteAnnotation to ip. If that changed the
// annotation, flannel's pod on that node (if any) is deleted so that its DaemonSet starts
// a new flanneld, which reads the new address.
func SetNodePublicIP(ctx context.Context, cs kubernetes.Interface, node string, ip netip.Addr) error {
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsLoopback() {
		return fmt.Errorf("flannel public IP of node %s: %q is not an address other nodes can reach: pass the host's address", node, ip)
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("setting the flannel public IP of node %s: %w", node, err)
	}
	if n.Annotations[PublicIPOverwriteAnnotation] == ip.String() {
		return nil
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{PublicIPOverwriteAnnotation: ip.String()}},
	})
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: apply.FieldManager}); err != nil {
		return fmt.Errorf("setting the flannel public IP of node %s: %w", node, err)
	}

	pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: "app=flannel",
		FieldSelector: "spec.nodeName=" + node,
	})
	if err != nil {
		return fmt.Errorf("listing flannel pods on node %s to restart them for the new public IP: %w", node, err)
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName != node { // fake clients ignore field selectors
			continue
		}
		if err := cs.CoreV1().Pods(Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("restarting flannel pod %s for the new public IP of node %s (delete it by hand): %w", p.Name, node, err)
		}
	}
	return nil
}
