// Package bootstrap is `u7s init` and `u7s reset`: pipelines of small checked steps that
// prepare the host, start the node and run kubeadm inside it.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/registry"
	"github.com/u7s/u7s/internal/version"
)

// InitOptions are `u7s init`'s flags.
type InitOptions struct {
	PodCIDR              string
	ServiceCIDR          string
	AdvertiseAddress     string
	BindPort             int
	ControlPlaneEndpoint string
	KubernetesVersion    string
	UploadCerts          bool
	DryRun               bool
	Verbosity            int
	// CgroupMode is "auto" (delegate where possible) or "none".
	CgroupMode string
	// KeepOnFailure leaves a failed init in place for inspection instead of undoing it.
	KeepOnFailure bool
	// NoNodePortForwarding leaves NodePorts inside the namespace (forward them with u7s ports).
	NoNodePortForwarding bool
	Registry             registry.Source
	Out                  io.Writer
}

// KubeadmInitConfig is the kubeadm configuration init writes (readable inside the namespace).
var KubeadmInitConfig = filepath.Join(paths.ConfigDir, "kubeadm-init.yaml")

// ControlPlanePorts are forwarded from the host into the namespace on a control-plane node.
func ControlPlanePorts(apiPort int) []string {
	return []string{
		fmt.Sprintf("0.0.0.0:%d:%d/tcp", apiPort, apiPort),
		"0.0.0.0:2379:2379/tcp", "0.0.0.0:2380:2380/tcp",
		"0.0.0.0:10250:10250/tcp", "0.0.0.0:10256:10256/tcp",
		"0.0.0.0:8472:8472/udp",
	}
}

func (o *InitOptions) validate() (pod, svc netip.Prefix, err error) {
	var problems []string
	if o.KubernetesVersion != "" && o.KubernetesVersion != version.Pinned.Kubernetes {
		problems = append(problems, fmt.Sprintf("--kubernetes-version %s: this u7s runs Kubernetes %s only; drop the flag or install the u7s of that version",
			o.KubernetesVersion, version.Pinned.Kubernetes))
	}
	if pod, err = netip.ParsePrefix(o.PodCIDR); err != nil || !pod.Addr().Is4() {
		problems = append(problems, fmt.Sprintf("--pod-network-cidr %q is not an IPv4 CIDR like 10.244.0.0/16", o.PodCIDR))
	}
	if svc, err = netip.ParsePrefix(o.ServiceCIDR); err != nil || !svc.Addr().Is4() {
		problems = append(problems, fmt.Sprintf("--service-cidr %q is not an IPv4 CIDR like 10.96.0.0/12", o.ServiceCIDR))
	}
	if pod.IsValid() && pod.Bits() > 24 {
		problems = append(problems, fmt.Sprintf("--pod-network-cidr %s is too small: flannel gives every node a /24; use /16", pod))
	}
	if o.BindPort < 1 || o.BindPort > 65535 {
		problems = append(problems, fmt.Sprintf("--apiserver-bind-port %d is not a port (1-65535)", o.BindPort))
	}
	if o.AdvertiseAddress != "" {
		if ip := net.ParseIP(o.AdvertiseAddress); ip == nil || ip.To4() == nil {
			problems = append(problems, fmt.Sprintf("--apiserver-advertise-address %q is not an IPv4 address", o.AdvertiseAddress))
		}
	}
	if o.ControlPlaneEndpoint != "" {
		if _, _, err := net.SplitHostPort(o.ControlPlaneEndpoint); err != nil && strings.Contains(o.ControlPlaneEndpoint, ":") {
			problems = append(problems, fmt.Sprintf("--control-plane-endpoint %q: want HOST or HOST:PORT", o.ControlPlaneEndpoint))
		}
	}
	switch o.CgroupMode {
	case "auto", "none":
	default:
		problems = append(problems, fmt.Sprintf("--cgroup-mode %q: want auto or none", o.CgroupMode))
	}
	if len(problems) > 0 {
		return pod, svc, errors.New(strings.Join(problems, "\n  "))
	}
	return pod, svc, nil
}

// Init bootstraps the first control plane.
func Init(ctx context.Context, o InitOptions) (err error) {
	out := o.Out
	pod, svc, err := o.validate()
	if err != nil {
		return fmt.Errorf("bad flags:\n  %w", err)
	}

	step(out, "resolving the image registry")
	res, err := registry.Resolve(o.Registry)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "    U7S_REGISTRY: %s\n", res.Value)
	images := registry.Refs(res.Images(version.Pinned))
	step(out, "checking that the registry has all %d images", len(images))
	missing, err := registry.Check(ctx, images)
	if err != nil {
		return fmt.Errorf("checking the images: %w", err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("the registry lacks %d image(s) the node needs; nothing was changed on this host:\n  %s\npush them (u7s images build --push) or choose another registry with U7S_REGISTRY",
			len(missing), strings.Join(missing, "\n  "))
	}

	step(out, "checking the host")
	if err := host.Preflight(host.PreflightOptions{APIServerPort: o.BindPort, PodCIDR: pod, ServiceCIDR: svc}); err != nil {
		return fmt.Errorf("the host is not ready; nothing was changed:\n%w", err)
	}
	addr := o.AdvertiseAddress
	if addr == "" {
		ip, err := host.PrimaryIPv4()
		if err != nil {
			return err
		}
		addr = ip.String()
	}
	hostname, err := os.Hostname()
	if err != nil {
		return err
	}
	n := &config.Node{
		Role:               config.ControlPlane,
		NodeName:           strings.ToLower(hostname),
		AdvertiseAddress:   addr,
		APIServerPort:      o.BindPort,
		PodCIDR:            pod.String(),
		ServiceCIDR:        svc.String(),
		Registry:           res.Value,
		ImageRepository:    res.ImageRepository(),
		PauseImage:         res.PauseImage(version.Pinned),
		FlannelImage:       res.FlannelImage(version.Pinned),
		Insecure:           registry.InsecureRegistries(res),
		Ports:              ControlPlanePorts(o.BindPort),
		NodePortForwarding: !o.NoNodePortForwarding,
	}
	docs, err := kubeadm.InitDocuments(kubeadm.InitOptions{Node: n, ControlPlaneEndpoint: o.ControlPlaneEndpoint})
	if err != nil {
		return err
	}
	if o.DryRun {
		fmt.Fprintf(out, "[dry-run] the host would be prepared (user %s, sysctls, cgroup delegation), the node started, and kubeadm run with:\n%s", paths.User, docs)
		return nil
	}

	// From here on the host changes: undo everything if a step fails.
	defer func() {
		if err == nil {
			return
		}
		if o.KeepOnFailure {
			fmt.Fprintf(out, "init failed; the node is left as it is (--keep-on-failure): inspect %s, then run u7s reset\n", paths.LogDir)
			return
		}
		fmt.Fprintf(out, "init failed; undoing what it did (u7s reset)...\n")
		if rerr := Reset(io.Discard); rerr != nil {
			fmt.Fprintf(out, "warning: cleaning up: %v\n", rerr)
		}
	}()

	step(out, "creating the system user %s", paths.User)
	u, err := host.EnsureUser()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "    uid %d, subordinate ids %s\n", u.UID, u.SubUID)
	step(out, "applying sysctls")
	if _, err := host.ApplySysctls(); err != nil {
		return err
	}
	if err := host.EnsureTun(); err != nil {
		return err
	}
	if err := host.EnsureModulesDir(); err != nil {
		return err
	}
	if err := makeDirs(u.UID, u.GID); err != nil {
		return err
	}
	step(out, "choosing the cgroup mode")
	if n.Cgroup, err = chooseCgroups(o.CgroupMode, u); err != nil {
		return err
	}
	fmt.Fprintf(out, "    %s: %s\n", n.Cgroup, n.Cgroup.Description())
	if err := n.Save(); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(KubeadmInitConfig, docs, 0o644); err != nil {
		return err
	}

	if err := startNode(out, node.Owner{UID: u.UID, GID: u.GID}); err != nil {
		return err
	}

	step(out, "running kubeadm init inside the namespace")
	args := []string{paths.Binary, "kubeadm", "init", "--config", KubeadmInitConfig}
	if exe, err := os.Executable(); err == nil {
		args[0] = exe
	}
	if o.UploadCerts {
		args = append(args, "--upload-certs")
	}
	if o.Verbosity > 0 {
		args = append(args, "-v", strconv.Itoa(o.Verbosity))
	}
	if err := node.Run(node.Owner{UID: u.UID, GID: u.GID}, nil, out, out, args...); err != nil {
		return fmt.Errorf("kubeadm init failed (logs: %s): %w", paths.LogDir, err)
	}
	if err := finish(ctx, out, n); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nThe node is Ready. Use it from the host as root:\n  export KUBECONFIG=%s\n  kubectl get nodes\n", paths.AdminKubeconfig)
	fmt.Fprintf(out, "cgroup mode: %s: %s\n", n.Cgroup, n.Cgroup.Description())
	return nil
}

func step(out io.Writer, format string, args ...any) {
	fmt.Fprintf(out, "[u7s] "+format+"\n", args...)
}

// makeDirs creates the node's directories, owned by its user.
func makeDirs(uid, gid int) error {
	for _, d := range []string{paths.RunDir, paths.State, paths.LogDir, paths.KubernetesDir} {
		if err := fsutil.MkdirOwned(d, 0o755, uid, gid); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	return os.MkdirAll(paths.ConfigDir, 0o755)
}

// chooseCgroups delegates what it can: on cgroup v1 a subtree of every hierarchy under the
// cgroup init runs in; on v2 only systemd's Delegate=yes can, so it reports what it finds.
func chooseCgroups(want string, u host.User) (cgroups.Mode, error) {
	if want == "none" {
		return cgroups.None, nil
	}
	layout, err := cgroups.Detect()
	if err != nil {
		return "", err
	}
	if layout.IsV1() {
		if _, err := cgroups.DelegateV1(layout, "u7s", u.UID, u.GID); err != nil {
			return "", fmt.Errorf("delegating cgroup v1 subtrees to %s: %w (use --cgroup-mode=none to run without pod limits)", paths.User, err)
		}
		return cgroups.V1Delegated, nil
	}
	// cgroup v2: the supervisor inherits init's cgroup, which is delegated only if init itself
	// runs in a cgroup handed to the node's user (systemd's Delegate=yes on the u7s unit).
	mode, err := cgroups.DetectV2Delegation(layout, u.UID)
	if err != nil {
		fmt.Fprintf(os.Stderr, "warning: %v\n", err)
	}
	return mode, nil
}

func startNode(out io.Writer, o node.Owner) error {
	step(out, "starting the node's namespace (rootlesskit, slirp4netns, cri-o)")
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	start := time.Now()
	pid, err := node.StartDetached(o, exe)
	if err != nil {
		return err
	}
	if err := node.WaitReady(pid, 2*time.Minute); err != nil {
		return fmt.Errorf("the node's namespace did not come up: %w", err)
	}
	fmt.Fprintf(out, "    supervisor pid %d, cri-o ready in %.1fs\n", pid, time.Since(start).Seconds())
	return nil
}
