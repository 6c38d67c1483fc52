// Package kube gives the host side of u7s its Kubernetes clients, one per role of credentials,
// and the waits that init and join end with.
package kube

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/u7s/u7s/internal/paths"
)

// Admin is the cluster-admin client of a control plane (admin.conf, root on the host).
func Admin() (kubernetes.Interface, error) {
	cfg, err := AdminConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// ConfigOf is the configuration of a node's own credentials: a control plane's admin.conf
// (root's), a worker's kubelet credentials.
func ConfigOf(controlPlane bool) (*rest.Config, error) {
	if controlPlane {
		return AdminConfig()
	}
	return NodeConfig()
}

// AdminAt is Admin talking to the API server at hostport only (a control plane's own), not
// to the control-plane endpoint, which a balancer may answer from another control plane.
func AdminAt(hostport string) (kubernetes.Interface, error) {
	cfg, err := AdminConfig()
	if err != nil {
		return nil, err
	}
	cfg.Host = "https://" + hostport
	return kubernetes.NewForConfig(cfg)
}

// AdminConfig is the client configuration of Admin.
func AdminConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", paths.AdminKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading %s (only a control plane has it): %w", paths.AdminKubeconfig, err)
	}
	return Retrying(cfg), nil
}

// NodeConfig is the node's own client configuration, the kubelet's kubeconfig, on every role.
// Its certificate paths are the namespace's (kubelet writes /var/lib/kubelet/pki/...,
// including the symlink kubelet-client-current.pem, absolute inside): they are mapped to the
// host's, so that the supervisor (outside the namespace) can use them.
func NodeConfig() (*rest.Config, error) {
	raw, err := clientcmd.LoadFromFile(paths.KubeletKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading %s (written when the node joins the cluster): %w", paths.KubeletKubeconfig, err)
	}
	for _, a := range raw.AuthInfos {
		for _, f := range []*string{&a.ClientCertificate, &a.ClientKey} {
			if *f != "" {
				*f = hostFile(*f)
			}
		}
	}
	for _, c := range raw.Clusters {
		if c.CertificateAuthority != "" {
			c.CertificateAuthority = hostFile(c.CertificateAuthority)
		}
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", paths.KubeletKubeconfig, err)
	}
	return Retrying(cfg), nil
}

// hostFile resolves a namespace path, following symlinks that are absolute inside.
func hostFile(inside string) string {
	p := paths.OnHost(inside)
	for range 8 {
		target, err := os.Readlink(p)
		if err != nil {
			return p
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(inside), target)
		}
		inside = target
		p = paths.OnHost(target)
	}
	return p
}

// Node is the client with the node's own credentials (system:node:NAME).
func Node() (kubernetes.Interface, error) {
	cfg, err := NodeConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// WaitNodeReady waits until the node is Ready and every pod on it runs and is ready (the
// static control-plane pods, kube-proxy, flannel, and on a first control plane coredns),
// printing what it still waits for whenever that changes. The node's own credentials see
// exactly those pods.
func WaitNodeReady(ctx context.Context, cs kubernetes.Interface, name string, out io.Writer) error {
	return WaitNodeReadySince(ctx, cs, name, time.Time{}, out)
}

// WaitNodeReadySince is WaitNodeReady for a node that was (re)started at since: its Ready must
// have been reported and its pods' containers started since then. After a restart, and above
// all after an etcd restore, the API holds the node's and its pods' statuses from before, all
// Ready, until the kubelet reports again.
func WaitNodeReadySince(ctx context.Context, cs kubernetes.Interface, name string, since time.Time, out io.Writer) error {
	start := time.Now()
	last := ""
	// The API's times have whole seconds.
	since = since.Truncate(time.Second)
	err := Poll(ctx, 2*time.Second, func(ctx context.Context) (bool, error) {
		waiting := pending(ctx, cs, name, since)
		if waiting != "" && waiting != last {
			fmt.Fprintf(out, "    [%3.0fs] waiting for %s\n", time.Since(start).Seconds(), waiting)
		}
		last = waiting
		return waiting == "", nil
	})
	if err != nil {
		return fmt.Errorf("gave up waiting for %s: %w", last, err)
	}
	fmt.Fprintf(out, "    node %s Ready, its pods running (%.0fs)\n", name, time.Since(start).Seconds())
	return nil
}

// Poll asks cond at once and then every interval until it is done or fails, or ctx ends (then
// ctx's error). cond returns (false, nil) to be asked again: the waits of u7s treat a failed
// request to a restarting API server as "not yet". The one wait loop of the host side of u7s.
func Poll(ctx context.Context, interval time.Duration, cond func(context.Context) (bool, error)) error {
	return wait.PollUntilContextCancel(ctx, interval, true, cond)
}

// SystemNamespaces are the namespaces of the pods a node needs.
var SystemNamespaces = []string{"kube-system", "kube-flannel"}

func pending(ctx context.Context, cs kubernetes.Interface, name string, since time.Time) string {
	nd, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "the API server (" + err.Error() + ")"
	}
	var waits []string
	if !NodeReady(nd) {
		waits = append(waits, "node Ready")
	} else if !heartbeatSince(nd, since) {
		waits = append(waits, "node Ready (the kubelet's first report)")
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + name})
	if err != nil {
		return "listing the node's pods: " + err.Error()
	}
	seen := map[string]bool{}
	for _, p := range pods.Items {
		if !strings.HasPrefix(p.Namespace, "kube-") {
			continue
		}
		seen[p.Namespace] = true
		if !PodReady(&p) {
			waits = append(waits, p.Name+" ("+podPhase(&p)+")")
		} else if !startedSince(&p, since) {
			waits = append(waits, p.Name+" (started again)")
		}
	}
	for _, ns := range SystemNamespaces {
		if !seen[ns] {
			waits = append(waits, ns+" pods")
		}
	}
	return strings.Join(waits, ", ")
}

// heartbeatSince: the node's Ready condition was reported at since or later.
func heartbeatSince(nd *corev1.Node, since time.Time) bool {
	for _, c := range nd.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return !c.LastHeartbeatTime.Time.Before(since)
		}
	}
	return false
}

// startedSince: each of the pod's containers runs since since or later.
func startedSince(p *corev1.Pod, since time.Time) bool {
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Running == nil || c.State.Running.StartedAt.Time.Before(since) {
			return false
		}
	}
	return true
}

// NodeReady reports the node's Ready condition.
func NodeReady(nd *corev1.Node) bool {
	for _, c := range nd.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// PodReady: running, and its Ready condition true.
func PodReady(p *corev1.Pod) bool {
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
