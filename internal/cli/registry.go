package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/registry"
)

// registrySourceFlags let an admin try the automatic rule against other files.
type registrySourceFlags struct {
	hostsFile, osReleaseFile string
}

func (f *registrySourceFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.hostsFile, "hosts-file", registry.DefaultHostsFile, "hosts(5) file the automatic rule reads for registry.local")
	cmd.Flags().StringVar(&f.osReleaseFile, "os-release", registry.DefaultOSReleaseFile, "os-release(5) file the automatic rule reads for CPE_NAME")
}

func (f *registrySourceFlags) resolve() (registry.Resolution, error) {
	return registry.Resolve(registry.Source{HostsFile: f.hostsFile, OSReleaseFile: f.osReleaseFile})
}

// newRegistryCommand is `u7s registry`: the registry every image of this node comes from.
func newRegistryCommand() *cobra.Command {
	var src registrySourceFlags
	var explain bool
	cmd := &cobra.Command{
		Use:   "registry [--explain]",
		Short: "Print the image registry (" + registry.EnvVar + ") this node pulls from",
		Long: "Prints the registry/repository prefix the node's images are named under, <value>/<image>:<tag>,\n" +
			"chosen as the specification says:\n" +
			"  " + registry.EnvVar + " unset      <prefix>/<platform>: prefix registry.local when an active line of /etc/hosts\n" +
			"                      names registry.local, else registry.altlinux.org; platform k8s-c10f1 when\n" +
			"                      CPE_NAME in /etc/os-release contains spserver, else k8s-p10\n" +
			"  set and empty       the native Kubernetes registry: printed as registry.k8s.io (setting that value\n" +
			"                      means the same); kubeadm's upstream names, flannel from ghcr.io/flannel-io/flannel\n" +
			"  set, not empty      used as given, trailing slashes dropped; an invalid prefix is an error\n" +
			"Only registry.local (any port) is spoken to over plain HTTP; every other registry over verified HTTPS.\n" +
			"--explain adds which rule decided and the file lines it read.",
		Example: "  u7s registry --explain\n" +
			"  U7S_REGISTRY= u7s registry --explain\n" +
			"  u7s registry --hosts-file /tmp/hosts --os-release /tmp/os-release",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := src.resolve()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, r.Value)
			if explain {
				for _, l := range r.Explanation {
					fmt.Fprintln(out, "  "+l)
				}
			}
			return nil
		},
	}
	src.bind(cmd)
	cmd.Flags().BoolVar(&explain, "explain", false, "say which rule chose the registry and from which file lines")
	return cmd
}
