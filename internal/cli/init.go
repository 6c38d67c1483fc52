package cli

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/bootstrap"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/version"
)

func init() {
	register(newInitCommand)
	register(newResetCommand)
}

func newInitCommand() *cobra.Command {
	o := bootstrap.InitOptions{}
	c := &cobra.Command{
		Use:   "init",
		Short: "Bootstrap the first control plane of a rootless cluster on this host (as root)",
		Long: `init prepares the host (user u7s-admin, subordinate ids, sysctls, cgroup delegation),
starts the node's user namespace (rootlesskit + slirp4netns) with cri-o and the kubelet inside,
runs kubeadm init there, installs flannel and waits until the node is Ready.
Images come from the registry U7S_REGISTRY names (see u7s registry --explain).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return errors.New("u7s init must run as root: try sudo u7s init")
			}
			o.Out = c.OutOrStdout()
			return bootstrap.Init(c.Context(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.PodCIDR, "pod-network-cidr", "10.244.0.0/16", "the pods' network (flannel gives each node a /24 of it)")
	f.StringVar(&o.ServiceCIDR, "service-cidr", "10.96.0.0/12", "the Services' virtual network")
	f.StringVar(&o.AdvertiseAddress, "apiserver-advertise-address", "", "the host address the node advertises (default: the address of the default route)")
	f.IntVar(&o.BindPort, "apiserver-bind-port", host.DefaultAPIServerPort, "the API server's port, on the host and inside the namespace")
	f.StringVar(&o.ControlPlaneEndpoint, "control-plane-endpoint", "", "a stable address (e.g. haproxy) for all control planes, HOST[:PORT]")
	f.StringVar(&o.KubernetesVersion, "kubernetes-version", version.Pinned.Kubernetes, "must be the version this u7s was built with")
	f.BoolVar(&o.UploadCerts, "upload-certs", false, "upload the control-plane certificates so that further control planes can join with --certificate-key")
	f.BoolVar(&o.DryRun, "dry-run", false, "check everything and print the kubeadm configuration, changing nothing")
	f.IntVarP(&o.Verbosity, "v", "v", 0, "kubeadm's log level (0-9)")
	f.StringVar(&o.CgroupMode, "cgroup-mode", "auto", "auto: delegate cgroups so pod limits hold; none: no delegation, no limits")
	f.BoolVar(&o.NoNodePortForwarding, "no-nodeport-forwarding", false, "do not forward NodePorts from the host automatically (u7s ports add does it by hand)")
	f.BoolVar(&o.KeepOnFailure, "keep-on-failure", false, "leave a failed init in place for inspection instead of undoing it")
	f.StringVar(&o.Registry.HostsFile, "hosts-file", "", "read this file instead of /etc/hosts for the registry rules")
	f.StringVar(&o.Registry.OSReleaseFile, "os-release", "", "read this file instead of /etc/os-release for the registry rules")
	_ = f.MarkHidden("hosts-file")
	_ = f.MarkHidden("os-release")
	return c
}

func newResetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "reset",
		Short: "Stop the node and remove everything init or join made (as root); safe to repeat",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return bootstrap.Reset(c.OutOrStdout())
		},
	}
}
