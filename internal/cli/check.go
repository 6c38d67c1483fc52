package cli

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/cis"
	"github.com/u7s/u7s/internal/paths"
)

func newCheckCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "check",
		Short: "Check the node against security benchmarks",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(newCheckCISCommand())
	return c
}

// inNodeFlag marks the re-execution of u7s check cis inside the node's namespaces.
const inNodeFlag = cis.InNodeFlag

func newCheckCISCommand() *cobra.Command {
	o := &cis.Runner{}
	// inNode: this process is the re-execution inside the node's namespace; it writes
	// kube-bench's JSON to stdout and nothing else.
	var inNode bool
	c := &cobra.Command{
		Use:   "cis",
		Short: "Run the CIS Kubernetes benchmark (kube-bench, u7s profile) against this node (as root)",
		Long: `Runs kube-bench inside the node's namespaces with the u7s profile ` + cis.Benchmark + `,
generated from kube-bench's own cfg/` + cis.Upstream + `: its component definitions point at the node's
kubeadm layout, and the checks that cannot apply to a rootless node are reported as not
applicable, with the reason. A control plane runs the master, controlplane, etcd, node and
policies targets, a worker the node target. Prints every FAIL and WARN and the totals; exits
non-zero when a check fails.`,
		Example: `  u7s check cis
  u7s check cis --json | jq '.Totals'`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if inNode {
				return o.InNode(c.OutOrStdout(), c.ErrOrStderr())
			}
			exe, err := os.Executable()
			if err != nil {
				exe = paths.Binary
			}
			return o.OnHost(exe, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	f := c.Flags()
	f.StringVar(&o.KubeBench, "kube-bench", paths.KubeBench, "the kube-bench binary (it must be readable inside the node's namespace)")
	f.StringVar(&o.ConfigDir, "config-dir", paths.KubeBenchCfg, "kube-bench's upstream cfg/ directory, the profile is derived from it")
	f.BoolVar(&o.JSON, "json", false, "print kube-bench's JSON result unchanged instead of the report")
	f.BoolVar(&inNode, inNodeFlag, false, "run kube-bench here: inside the node's namespace")
	f.StringSliceVar(&o.Targets, "targets", nil, "the benchmark's targets (default: by the node's role)")
	_ = f.MarkHidden(inNodeFlag)
	_ = f.MarkHidden("targets")
	return c
}
