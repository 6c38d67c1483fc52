package cli

import (
	"cmp"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/u7s/u7s/internal/balancer"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/paths"
)

// defaultEndpointPort is the balancer's port in the specification's layout (frontend main on
// 8443), used when the control planes are named on the command line.
const defaultEndpointPort = 8443

func newBalancerCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "balancer",
		Short: "The balancers in front of the cluster: haproxy for the control planes' API, keepalived for a virtual IP",
	}
	c.AddCommand(newBalancerConfigCommand())
	return c
}

func newBalancerConfigCommand() *cobra.Command {
	var (
		kubeconfig, vip, iface string
		servers                []string
		port, priority, router int
		keepalived, ingress    bool
	)
	cmd := &cobra.Command{
		Use:   "config [--ingress] | --keepalived --vip IP --interface IF [--priority N]",
		Short: "Print haproxy.cfg for the cluster's control planes, or a balancer's keepalived.conf",
		Long: "Prints a haproxy.cfg whose frontend, on the control-plane endpoint's port, balances the API\n" +
			"over every control plane the cluster lists (each API server's advertise address and port), with\n" +
			"the specification's health checks and the retries a powered-off control plane needs. Run it\n" +
			"again after a control plane joins or leaves and reload haproxy. Before init, name the first\n" +
			"control plane with --server. With --ingress, frontends on 80 and 443 balance over every node.\n\n" +
			"With --keepalived it prints keepalived.conf for one of several balancer hosts: the same\n" +
			"--vip, --interface and --router-id on each and its own --priority; the VIP is held by a\n" +
			"balancer whose haproxy runs. Pass the VIP (with the port) as init's --control-plane-endpoint.",
		Example: "  u7s balancer config > /etc/haproxy/haproxy.cfg   # on a control plane, as root\n" +
			"  u7s balancer config --server cp1=192.168.1.11 --port 8443\n" +
			"  u7s balancer config --keepalived --vip 192.168.1.10 --interface eth0 --priority 101",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if keepalived {
				if router == 0 {
					router = routerID(vip)
				}
				k := balancer.Keepalived{VIP: vip, Interface: iface, Priority: priority, RouterID: router}
				out, err := k.Config()
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(c.OutOrStdout(), out)
				return err
			}
			if vip != "" || iface != "" || c.Flags().Changed("priority") || router != 0 {
				return fmt.Errorf("--vip, --interface, --priority and --router-id go with --keepalived")
			}
			var h balancer.HAProxy
			if len(servers) > 0 {
				if ingress {
					return fmt.Errorf("--ingress reads the nodes from the cluster: leave out --server")
				}
				h.Port = cmp.Or(port, defaultEndpointPort)
				for _, s := range servers {
					sv, err := parseServer(s)
					if err != nil {
						return err
					}
					h.ControlPlanes = append(h.ControlPlanes, sv)
				}
			} else {
				cs, err := clusterClient(kubeconfig)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.ErrOrStderr(), "reading the control planes from the cluster (%s)\n", kubeconfig)
				ep := port
				if ep == 0 {
					if ep, err = endpointPort(c, cs); err != nil {
						return err
					}
				}
				if h, err = balancer.FromCluster(c.Context(), cs, ep, ingress); err != nil {
					return err
				}
			}
			out, err := h.Config()
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.OutOrStdout(), out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", paths.AdminKubeconfig, "the cluster to read the control planes and nodes from")
	f.StringArrayVar(&servers, "server", nil, "a control plane NAME=IP[:PORT] instead of reading the cluster (before init; repeat for each)")
	f.IntVar(&port, "port", 0, "the frontend's port (default: the cluster's control-plane endpoint's, 8443 with --server)")
	f.BoolVar(&ingress, "ingress", false, "also balance ports 80 and 443 over every node's ingress")
	f.BoolVar(&keepalived, "keepalived", false, "print keepalived.conf for a balancer host instead")
	f.StringVar(&vip, "vip", "", "the virtual IP the balancers share (with --keepalived)")
	f.StringVar(&iface, "interface", "", "the balancer host's interface on the VIP's network (with --keepalived)")
	f.IntVar(&priority, "priority", 100, "this balancer's priority, its own on each (with --keepalived; 1-254)")
	f.IntVar(&router, "router-id", 0, "the VRRP router id, the same on every balancer (with --keepalived; default: the VIP's last byte)")
	return cmd
}

// routerID is the default VRRP id of vip: its last byte, which differs between the VIPs of
// one network segment (0 when vip is not IPv4: Check then names the VIP).
func routerID(vip string) int {
	ip := net.ParseIP(vip).To4()
	if ip == nil {
		return 0
	}
	if ip[3] == 0 {
		return 255
	}
	return int(ip[3])
}

// parseServer reads NAME=IP[:PORT] (the API server's port by default).
func parseServer(s string) (balancer.Server, error) {
	name, addr, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return balancer.Server{}, fmt.Errorf("--server %q: want NAME=IP[:PORT], e.g. cp1=192.168.1.11", s)
	}
	sv := balancer.Server{Name: name, Address: addr, Port: config.DefaultAPIServerPort}
	if h, p, err := net.SplitHostPort(addr); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil {
			return sv, fmt.Errorf("--server %q: port %q is not a number", s, p)
		}
		sv.Address, sv.Port = h, n
	}
	return sv, nil
}

func clusterClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading %s (on a control plane as root, or pass --kubeconfig; before init, name the control planes with --server): %w", kubeconfig, err)
	}
	return kubernetes.NewForConfig(kube.Retrying(cfg))
}

// endpointPort is the port of the cluster's control-plane endpoint: the balancer's frontend
// must listen where every kubeconfig and kubelet of the cluster connects.
func endpointPort(c *cobra.Command, cs kubernetes.Interface) (int, error) {
	cc, err := kubeadm.ClusterConfiguration(c.Context(), cs)
	if err != nil {
		return 0, err
	}
	if cc.ControlPlaneEndpoint == "" {
		return 0, fmt.Errorf("the cluster has no control-plane endpoint (init ran without --control-plane-endpoint): " +
			"its nodes reach the first control plane directly, and a balancer cannot be put in front of them afterwards; " +
			"pass --port to write a configuration anyway")
	}
	_, p, err := net.SplitHostPort(cc.ControlPlaneEndpoint)
	if err != nil {
		return config.DefaultAPIServerPort, nil // HOST alone: kubeadm's default port
	}
	return strconv.Atoi(p)
}
