package cli

import (
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"
)

// bindPhases makes c run the phases ps on kubeadm's workflow runner: `c phase NAME` runs one,
// --skip-phases leaves some out (a flow interrupted at a phase goes on from there); every phase
// takes the command's flags. newData makes the run's data before the first phase. done, if
// given, is the flow's failure policy: it gets the data (made: whether newData succeeded) and
// the run's error, and returns the error to report. The one binder of every flow.
func bindPhases[D workflow.RunData](c *cobra.Command, ps []workflow.Phase,
	newData func(cmd *cobra.Command, args []string) (D, error),
	done func(cmd *cobra.Command, d D, made bool, err error) error) {
	r := workflow.NewRunner()
	for _, p := range ps {
		c.Flags().VisitAll(func(f *pflag.Flag) { p.InheritFlags = append(p.InheritFlags, f.Name) })
		r.AppendPhase(p)
	}
	var data D
	made := false
	r.SetDataInitializer(func(cmd *cobra.Command, args []string) (workflow.RunData, error) {
		d, err := newData(cmd, args)
		data, made = d, err == nil
		return d, err
	})
	c.RunE = func(cmd *cobra.Command, args []string) error {
		err := r.Run(args)
		if done != nil {
			return done(cmd, data, made, err)
		}
		return err
	}
	r.BindToCommand(c)
}
