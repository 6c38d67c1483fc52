package cli

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/phases"
	"github.com/u7s/u7s/internal/version"
)

// bindFlow binds init's or join's phases to c (bindPhases), with their failure policy
// (phases.Failed: keep the logs, undo unless --keep-on-failure).
func bindFlow(c *cobra.Command, flow string, ps []workflow.Phase, o *phases.Options) {
	bindPhases(c, ps, func(cmd *cobra.Command, args []string) (*phases.Data, error) {
		if len(args) > 0 {
			o.Endpoint = args[0]
		}
		return phases.NewData(cmd.Context(), flow, *o, cmd.OutOrStdout())
	}, func(cmd *cobra.Command, d *phases.Data, made bool, err error) error {
		if !made {
			d = nil
		}
		return phases.Failed(cmd.Context(), flow, d, o.KeepOnFailure, cmd.OutOrStdout(), err)
	})
}

// nodeFlags are the flags init and join share.
func nodeFlags(f *pflag.FlagSet, o *phases.Options) {
	f.StringVar(&o.NodeName, "node-name", "", "the node's name (default: the host name in lower case)")
	f.StringVar(&o.AdvertiseAddress, "apiserver-advertise-address", "", "the host address the node advertises: its InternalIP, and a control plane's API server and etcd address (default: the address of the default route)")
	f.IntVar(&o.BindPort, "apiserver-bind-port", config.DefaultAPIServerPort, "a control plane's API server port, on the host and inside the namespace")
	f.BoolVar(&o.DryRun, "dry-run", false, "check everything and print the kubeadm configuration, changing nothing")
	f.IntVarP(&o.Verbosity, "v", "v", 0, "kubeadm's log level (0-9)")
	f.StringVar(&o.CgroupMode, "cgroup-mode", "auto", "auto: delegate cgroups so pod limits hold; none: no delegation, no limits")
	f.BoolVar(&o.NoNodePortForwarding, "no-nodeport-forwarding", false, "do not forward NodePorts from the host automatically (u7s ports add does it by hand)")
	f.BoolVar(&o.KeepOnFailure, "keep-on-failure", false, "leave a failed run in place for inspection instead of undoing it")
	f.DurationVar(&o.Timeout, "timeout", config.DefaultStepTimeout, "the longest one step may take: kubeadm's waits for the control plane, the kubelet, TLS bootstrap and discovery, and u7s's for the node; raise it on a very slow host")
	f.StringVar(&o.RebootWindow, "reboot-window", "", "when a coordinated reboot (/var/run/reboot-required) may start, HH:MM-HH:MM local time (default: any time)")
	f.BoolVar(&o.NoCoordinatedReboots, "no-coordinated-reboots", false, "ignore /var/run/reboot-required: no drain-and-reboot one node at a time")
	f.StringVar(&o.LocalStorageDir, "local-storage-dir", paths.VolumesDir, "where this node keeps the local volumes of the default StorageClass: a directory (or a file system's mount point) of the host, made u7s-admin's, mode 0700")
	f.StringVar(&o.ImageSigningKey, "image-signing-key", "", "the site's public key (u7s images keygen): the node runs only images from its registry signed with it")
	f.StringVar(&o.Registry.HostsFile, "hosts-file", "", "read this file instead of /etc/hosts for the registry rules")
	f.StringVar(&o.Registry.OSReleaseFile, "os-release", "", "read this file instead of /etc/os-release for the registry rules")
	_ = f.MarkHidden("hosts-file")
	_ = f.MarkHidden("os-release")
}

func newInitCommand() *cobra.Command {
	o := &phases.Options{}
	c := &cobra.Command{
		Use:   "init",
		Short: "Bootstrap the first control plane of a rootless cluster on this host (as root)",
		Long: `init prepares the host (user u7s-admin, subordinate ids, sysctls, cgroup delegation),
starts the node's user namespace (rootlesskit + slirp4netns) with cri-o and the kubelet inside
(as the systemd unit u7s.service where systemd runs), runs kubeadm init there, installs
flannel, NetworkPolicy enforcement, the default StorageClass and the Metrics API, waits until the node is Ready and prints the u7s join commands.
Images come from the registry U7S_REGISTRY names (see u7s registry --explain).`,
		Args: cobra.NoArgs,
	}
	f := c.Flags()
	nodeFlags(f, o)
	f.StringVar(&o.PodCIDR, "pod-network-cidr", "10.244.0.0/16", "the pods' network (flannel gives each node a /24 of it)")
	f.StringVar(&o.ServiceCIDR, "service-cidr", "10.96.0.0/12", "the Services' virtual network")
	f.StringVar(&o.ControlPlaneEndpoint, "control-plane-endpoint", "", "a stable address (e.g. haproxy) for all control planes, HOST[:PORT]")
	f.StringVar(&o.KubernetesVersion, "kubernetes-version", version.Pinned.Kubernetes, "must be the version this u7s was built with")
	f.BoolVar(&o.UploadCerts, "upload-certs", false, "upload the control-plane certificates so that further control planes can join with --certificate-key")
	f.BoolVar(&o.ScheduleWorkloads, "schedule-workloads", false, "no control-plane taint: ordinary pods run on this control plane too (a single-node cluster)")
	f.BoolVar(&o.NoLocalStorage, "no-local-storage", false, "install no default StorageClass (local volumes in "+paths.VolumesDir+" of each node)")
	f.BoolVar(&o.NoMetricsServer, "no-metrics-server", false, "install no Metrics API (metrics-server: kubectl top, HorizontalPodAutoscalers)")
	bindFlow(c, phases.FlowInit, phases.Init(), o)
	return c
}

func newJoinCommand() *cobra.Command {
	o := &phases.Options{}
	c := &cobra.Command{
		Use:   "join ENDPOINT --token TOKEN --discovery-token-ca-cert-hash sha256:HASH [--control-plane --certificate-key KEY]",
		Short: "Add this host to a cluster as a worker, or as a further control plane (as root)",
		Long: `join prepares the host as init does, starts the node, and runs kubeadm join inside it.
ENDPOINT is the API server (or the balancer in front of the control planes) as HOST:PORT.
The token, the CA hash and the certificate key are checked before anything changes.
The command is printed by u7s init, and again by u7s token create --print-join-command.`,
		Args: cobra.MaximumNArgs(1),
	}
	f := c.Flags()
	nodeFlags(f, o)
	f.StringVar(&o.Token, "token", "", "the bootstrap token")
	f.StringSliceVar(&o.CACertHashes, "discovery-token-ca-cert-hash", nil, "the pin of the cluster CA's public key, sha256:HEX")
	f.BoolVar(&o.ControlPlane, "control-plane", false, "join as a control plane, with a stacked etcd member")
	f.StringVar(&o.CertificateKey, "certificate-key", "", "decrypts the control-plane certificates that init --upload-certs uploaded")
	f.BoolVar(&o.ScheduleWorkloads, "schedule-workloads", false, "with --control-plane: no control-plane taint")
	bindFlow(c, phases.FlowJoin, phases.Join(), o)
	return c
}

func newResetCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "reset",
		Short: "Take the node out of its cluster, stop it and remove everything init or join made (as root); safe to repeat",
		Args:  cobra.NoArgs,
	}
	bindPhases(c, phases.Reset(), func(cmd *cobra.Command, _ []string) (*phases.ResetData, error) {
		return phases.NewResetData(cmd.Context(), cmd.OutOrStdout())
	}, nil)
	return c
}
