package bootstrap

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/flannel"
	"github.com/u7s/u7s/internal/paths"
)

// Client returns a clientset from the admin kubeconfig.
func Client() (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", paths.AdminKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", paths.AdminKubeconfig, err)
	}
	return kubernetes.NewForConfig(cfg)
}

// finish installs flannel and waits for the node and the kube-system pods.
func finish(ctx context.Context, out io.Writer, n *config.Node) error {
	cs, err := Client()
	if err != nil {
		return err
	}
	step(out, "installing flannel (%s)", n.FlannelImage)
	ip, err := netip.ParseAddr(n.AdvertiseAddress)
	if err != nil {
		return err
	}
	if err := flannel.SetNodePublicIP(ctx, cs, n.NodeName, ip); err != nil {
		return fmt.Errorf("annotating node %s with its public address: %w", n.NodeName, err)
	}
	if err := flannel.Apply(ctx, cs, flannel.Options{Image: n.FlannelImage, PodCIDR: n.PodCIDR}); err != nil {
		return fmt.Errorf("installing flannel: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	step(out, "waiting for node %s to be Ready and the kube-system pods to run", n.NodeName)
	return WaitNodeReady(wctx, cs, n.NodeName, out)
}

// WaitNodeReady waits until the node is Ready and every kube-system pod runs and is ready,
// printing what it still waits for whenever that changes.
func WaitNodeReady(ctx context.Context, cs kubernetes.Interface, name string, out io.Writer) error {
	start := time.Now()
	last := ""
	for {
		waiting := pending(ctx, cs, name)
		if waiting == "" {
			fmt.Fprintf(out, "    node %s Ready, kube-system running (%.0fs)\n", name, time.Since(start).Seconds())
			return nil
		}
		if waiting != last {
			fmt.Fprintf(out, "    [%3.0fs] waiting for %s\n", time.Since(start).Seconds(), waiting)
			last = waiting
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting for %s: %w", waiting, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

func pending(ctx context.Context, cs kubernetes.Interface, name string) string {
	nd, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "the API server (" + err.Error() + ")"
	}
	ready := false
	for _, c := range nd.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	var waits []string
	if !ready {
		waits = append(waits, "node Ready")
	}
	for _, ns := range []string{"kube-system", "kube-flannel"} {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return "listing pods: " + err.Error()
		}
		for _, p := range pods.Items {
			if !podReady(&p) {
				waits = append(waits, p.Name+" ("+podPhase(&p)+")")
			}
		}
		if ns == "kube-system" && len(pods.Items) == 0 {
			waits = append(waits, "kube-system pods")
		}
	}
	return strings.Join(waits, ", ")
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podPhase(p *corev1.Pod) string {
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if s.State.Waiting != nil && s.State.Waiting.Reason != "" {
			return s.State.Waiting.Reason
		}
	}
	return string(p.Status.Phase)
}
