// Package status is what u7s status says of this host's node: how it was made, whether it
// runs, its release, its coordinated reboots and its certificates.
package status

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/u7s/u7s/internal/certs"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/localpath"
	"github.com/u7s/u7s/internal/maintenance"
	"github.com/u7s/u7s/internal/metricsserver"
	"github.com/u7s/u7s/internal/namespace"
	"github.com/u7s/u7s/internal/netpol"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/release"
)

// Write prints the node's status; an error says it does not run or is not ready.
func Write(out io.Writer, now time.Time) error {
	n, err := config.Load()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "role:        %s (node %s)\n", n.Role, n.NodeName)
	fmt.Fprintf(out, "address:     %s (API server port %d)\n", n.AdvertiseAddress, n.APIServerPort)
	fmt.Fprintf(out, "registry:    %s\n", n.Registry)
	fmt.Fprintf(out, "cgroups:     %s: %s\n", n.Cgroup, n.Cgroup.Description())
	nsnet := n.NamespaceNetwork
	if nsnet == "" {
		nsnet = host.DefaultNamespaceNetwork.String()
	}
	fmt.Fprintf(out, "namespace:   network %s (slirp4netns; pods %s, Services %s)\n", nsnet, n.PodCIDR, n.ServiceCIDR)
	fmt.Fprintf(out, "endpoint:    %s\n", n.Endpoint)
	fmt.Fprintf(out, "release:     %s\n", releaseLine())
	if n.Service {
		fmt.Fprintf(out, "runs as:     systemd unit u7s.service (systemctl status u7s)\n")
	} else {
		fmt.Fprintf(out, "runs as:     a detached supervisor (systemd is not PID 1; u7s start after a reboot)\n")
	}
	pid := node.SupervisorPID()
	if pid == 0 {
		fmt.Fprintf(out, "supervisor:  not running\n")
		return fmt.Errorf("the node is not running")
	}
	fmt.Fprintf(out, "supervisor:  running (pid %d)\n", pid)
	child, err := namespace.ChildPID(paths.RootlesskitStateDir)
	if err != nil {
		fmt.Fprintf(out, "namespace:   %v\n", err)
		return fmt.Errorf("the node is not ready")
	}
	ready := "starting"
	if st, err := os.Stat(paths.ReadyFile); err == nil {
		ready = "ready since " + st.ModTime().Format(time.RFC3339)
	}
	fmt.Fprintf(out, "namespace:   pid %d, cri-o %s\n", child, ready)
	policy := "NetworkPolicy enforced"
	if err := netpol.Enforcing(child); err != nil {
		policy = "NetworkPolicy NOT enforced on this node: " + err.Error()
	}
	fmt.Fprintf(out, "policy:      %s\n", policy)
	storage, metrics := addons(n)
	fmt.Fprintf(out, "storage:     %s\n", storage)
	fmt.Fprintf(out, "metrics:     %s\n", metrics)
	fmt.Fprintf(out, "reboots:     %s\n", maintenance.Status(n))
	if n.Role == config.ControlPlane {
		for _, w := range certWarnings(now) {
			fmt.Fprintf(out, "warning:     %s\n", w)
		}
	}
	return nil
}

// addons says whether this node's provisioner of the default StorageClass runs and, asked on a
// control plane, whether the Metrics API answers (a worker's credentials cannot read it).
func addons(n *config.Node) (storage, metrics string) {
	storage, metrics = "none: u7s init --no-local-storage", "none: u7s init --no-metrics-server"
	cs, err := kube.Node()
	if n.Role == config.ControlPlane {
		cs, err = kube.Admin()
	}
	if err != nil {
		return err.Error(), err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !n.NoLocalStorage {
		storage = fmt.Sprintf("default StorageClass %s, volumes in %s: %s", localpath.StorageClassName, n.VolumesHostDir(), localpath.Running(ctx, cs, n.NodeName))
	}
	switch {
	case n.NoMetricsServer:
	case n.Role != config.ControlPlane:
		metrics = "metrics-server (ask a control plane: u7s status there, or kubectl top nodes)"
	default:
		metrics = "Metrics API available (kubectl top)"
		if err := metricsserver.Available(ctx, cs); err != nil {
			metrics = "Metrics API NOT available: " + err.Error()
		}
	}
	return storage, metrics
}

// releaseLine is the Kubernetes release the node runs, and whether this u7s carries another.
func releaseLine() string {
	cur, err := release.Default().Current()
	switch {
	case err != nil:
		return err.Error()
	case cur == "":
		return "none recorded (made by an older u7s)"
	case cur != release.Carried():
		return fmt.Sprintf("Kubernetes %s; this u7s carries %s: u7s upgrade plan", cur, release.Carried())
	}
	return "Kubernetes " + cur
}

// certWarnings is what u7s status says about certificates that expire within 30 days.
func certWarnings(now time.Time) []string {
	cs, err := certs.Expiry(paths.KubernetesDir)
	if err != nil {
		return []string{fmt.Sprintf("cannot read the certificates: %v", err)}
	}
	var w []string
	for _, c := range certs.Within(cs, now, 30*24*time.Hour) {
		w = append(w, fmt.Sprintf("%s (%s) expires %s: u7s certs renew all", c.Path, c.Subject, c.NotAfter.Format(time.RFC3339)))
	}
	return w
}
