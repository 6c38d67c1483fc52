// Package supervisor is the node's long-running process, run as u7s-admin: the ExecStart of
// the u7s systemd unit, or a detached process where systemd does not run. It joins the
// delegated cgroups, creates the namespace (rootlesskit's parent) and forwards the node's ports.
package supervisor

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"os"
	"strconv"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/csrapprover"
	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/maintenance"
	"github.com/u7s/u7s/internal/namespace"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/ports"
	"k8s.io/client-go/kubernetes"
)

// Run blocks for the life of the node.
func Run() error {
	log.SetPrefix("u7s supervisor: ")
	n, err := config.Load()
	if err != nil {
		return err
	}
	cg, err := cgroups.For(n.Cgroup)
	if err != nil {
		return err
	}
	evacuate, err := cg.EnterSupervisor(os.Getuid())
	if err != nil {
		return err
	}
	nsnet := host.DefaultNamespaceNetwork
	if n.NamespaceNetwork != "" {
		if nsnet, err = netip.ParsePrefix(n.NamespaceNetwork); err != nil {
			return fmt.Errorf("%s: namespaceNetwork: %w", config.Path, err)
		}
	}
	childIP := host.NamespaceChildIP(nsnet).String()
	var specs []port.Spec
	for _, s := range n.Ports {
		sp, err := ports.ParseSpec(s)
		if err != nil {
			return fmt.Errorf("%s: %w", config.Path, err)
		}
		specs = append(specs, sp)
	}
	if pid := node.SupervisorPID(); pid != 0 && pid != os.Getpid() {
		return fmt.Errorf("the node's supervisor already runs (pid %d)", pid)
	}
	if err := fsutil.WriteFileAtomic(paths.SupervisorPIDFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer os.Remove(paths.SupervisorPIDFile)
	os.Remove(paths.ReadyFile)

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if !notifyWhenReady() {
			return
		}
		if n.Role == config.ControlPlane {
			go approveServingCerts(ctx)
			go coordinateMaintenance(ctx, n.NodeName)
		}
		if n.NodePortForwarding {
			forwardNodePorts(ctx, n.NodeName, childIP)
		}
	}()
	log.Printf("starting the namespace (cgroup mode %s, network %s)", n.Cgroup, nsnet)
	status("starting the namespace (rootlesskit, slirp4netns) and cri-o")
	return namespace.RunParent(namespace.Config{
		StateDir:        paths.RootlesskitStateDir,
		MTU:             65520,
		CIDR:            nsnet.String(),
		Publish:         specs,
		TargetCmd:       []string{exe, "namespace-init"},
		EvacuateCgroup2: evacuate,
	})
}

// notifyWhenReady tells systemd (Type=notify) once cri-o answers inside the namespace.
func notifyWhenReady() bool {
	if err := namespace.WaitFile(paths.ReadyFile, 5*time.Minute, nil); err != nil {
		log.Printf("%v", err)
		return false
	}
	log.Printf("node namespace is ready")
	_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyReady+"\nSTATUS=cri-o ready; the kubelet runs the node")
	return true
}

// status is a STATUS= line for systemctl status while the node starts.
func status(s string) { _, _ = sddaemon.SdNotify(false, "STATUS="+s) }

// apiClient waits until the cluster's API answers with the credentials of connect (on a
// first init or join, kubeadm has not written them yet when the namespace comes up); nil when
// ctx ends first.
func apiClient(ctx context.Context, what string, connect func() (kubernetes.Interface, error)) kubernetes.Interface {
	var last string
	var cs kubernetes.Interface
	err := kube.Poll(ctx, 2*time.Second, func(context.Context) (bool, error) {
		c, err := connect()
		if err == nil {
			if _, err = c.Discovery().ServerVersion(); err == nil {
				cs = c
				return true, nil
			}
		}
		if err.Error() != last {
			log.Printf("%s waits for its credentials and the API: %v", what, err)
			last = err.Error()
		}
		return false, nil
	})
	if err != nil {
		return nil
	}
	return cs
}

// forwardNodePorts runs the controller of NodePort and hostPort forwards with the node's own
// credentials (every role has them).
func forwardNodePorts(ctx context.Context, nodeName, childIP string) {
	cs := apiClient(ctx, "NodePort forwarding", func() (kubernetes.Interface, error) {
		cfg, err := kube.NodeConfig()
		if err != nil {
			return nil, err
		}
		return kubernetes.NewForConfig(cfg)
	})
	if cs == nil {
		return
	}
	m, err := ports.Manager()
	if err != nil {
		log.Printf("NodePort forwarding off: %v", err)
		return
	}
	(&ports.Controller{Ports: m, Client: cs, ChildIP: childIP, NodeName: nodeName}).Run(ctx)
}

// approveServingCerts runs the kubelet-serving CSR approver on a control plane, with
// admin.conf (every control plane runs one; approving twice is harmless).
func approveServingCerts(ctx context.Context) {
	if cs := apiClient(ctx, "the kubelet-serving certificate approver", kube.Admin); cs != nil {
		csrapprover.New(cs, log.Printf).Run(ctx)
	}
}

// coordinateMaintenance grants the nodes' maintenance requests (coordinated reboots, upgrades) one at a
// time, on every control plane (they share the Lease).
func coordinateMaintenance(ctx context.Context, self string) {
	cs := apiClient(ctx, "the maintenance coordinator", kube.Admin)
	if cs == nil {
		return
	}
	log.Printf("maintenance coordinator started")
	(&maintenance.Coordinator{Client: cs, Identity: self, MaxDuration: 30 * time.Minute, DrainTimeout: 5 * time.Minute, Logf: log.Printf}).Run(ctx, 10*time.Second)
}
