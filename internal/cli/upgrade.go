package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/maintenance"
	"github.com/u7s/u7s/internal/phases"
	"github.com/u7s/u7s/internal/release"
	"github.com/u7s/u7s/internal/upgrade"
)

func newUpgradeCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade the cluster to the Kubernetes release this u7s carries, one node at a time (as root)",
		Long: `Upgrades follow Kubernetes' version-skew policy: one minor version at a time, never down, the
control planes first and the workers after them. Installing a newer u7s package changes nothing a
running node runs; then:

  u7s upgrade plan               what runs where, what would change, and what is refused
  u7s upgrade apply [VERSION]    on one control plane: the control plane, then this node
  u7s upgrade node               on every other control plane, then on every worker

Each node in turn takes the cluster-wide maintenance lock (the Lease the coordinated reboots use),
is cordoned and drained with its PodDisruptionBudgets respected, is upgraded by kubeadm (linked
into u7s) and switched to the new kubelet, cri-o and runc, restarts, is Ready at the new version
and is uncordoned. A control plane first saves an etcd snapshot. A failed upgrade gives the lock
back and may simply be run again.`,
	}
	c.AddCommand(newUpgradePlanCommand())
	apply := &cobra.Command{
		Use:   "apply [VERSION]",
		Short: "Upgrade the control plane and this first control-plane node to VERSION (default: the release this u7s carries, " + release.Carried() + ")",
		Args:  cobra.MaximumNArgs(1),
	}
	bindUpgradeFlow(apply, phases.FlowUpgradeApply, phases.UpgradeApply())
	node := &cobra.Command{
		Use:   "node",
		Short: "Upgrade this node (a further control plane, or a worker) after u7s upgrade apply",
		Args:  cobra.NoArgs,
	}
	bindUpgradeFlow(node, phases.FlowUpgradeNode, phases.UpgradeNode())
	c.AddCommand(apply, node)
	return c
}

// bindUpgradeFlow runs the upgrade phases on a kubeadm workflow runner, as bindFlow does for
// init and join; a failure after the lock was taken gives it back.
func bindUpgradeFlow(c *cobra.Command, flow string, ps []workflow.Phase) {
	o := &phases.UpgradeOptions{}
	f := c.Flags()
	f.BoolVarP(&o.Yes, "yes", "y", false, "do not ask for confirmation")
	f.BoolVar(&o.NoSnapshot, "no-snapshot", false, "on a control plane, do not save an etcd snapshot before the upgrade")
	f.DurationVar(&o.LockTimeout, "lock-timeout", 15*time.Minute, "how long to wait for the cluster-wide lock and the drain")
	f.IntVarP(&o.Verbosity, "v", "v", 0, "kubeadm's log level (0-9)")
	bindPhases(c, ps, func(cmd *cobra.Command, args []string) (*phases.UpgradeData, error) {
		if len(args) > 0 {
			o.Version = args[0]
		}
		return phases.NewUpgradeData(cmd.Context(), flow, *o, cmd.InOrStdin(), cmd.OutOrStdout())
	}, func(cmd *cobra.Command, d *phases.UpgradeData, made bool, err error) error {
		if err != nil && made && d.Locked {
			fmt.Fprintf(cmd.OutOrStdout(), "u7s %s failed; giving the maintenance lock back (the node is uncordoned once Ready). Fix the cause and run it again: it goes on from where it stopped.\n", flow)
			if uerr := d.UndoUpgrade(); uerr != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "warning: giving the lock back: %v (kubectl uncordon, and remove the node's annotation %s)\n", uerr, maintenance.RequestAnnotation)
			}
		}
		return err
	})
}

func newUpgradePlanCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "plan [VERSION]",
		Short: "What runs where, the upgrade this u7s can make, in which order, and kubeadm's plan (as root)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			n, err := config.Load()
			if err != nil {
				return err
			}
			target := release.Carried()
			if len(args) > 0 {
				target = args[0]
			}
			cfg, err := kube.ConfigOf(n.Role == config.ControlPlane)
			if err != nil {
				return err
			}
			cl, err := upgrade.Read(c.Context(), cfg, n.NodeName)
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			cur, _ := release.Default().Current()
			fmt.Fprintf(out, "The cluster now:\n%s", cl.Summary())
			fmt.Fprintf(out, "This node (%s, %s) runs release %s; this u7s carries %s.\n\n", n.NodeName, n.Role, release.Show(cur), release.Carried())
			p := upgrade.MakePlan(cl, target, release.Carried())
			fmt.Fprint(out, p.String())
			if p.Refusal != nil || n.Role != config.ControlPlane || p.UpToDate {
				return p.Refusal
			}
			fmt.Fprintf(out, "\nkubeadm's plan (kubeadm upgrade plan %s, inside the node):\n", target)
			return kubeadmInNode("upgrade", "plan", target)
		},
	}
}
