package phases

import (
	"fmt"

	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"
)

// typedPhase is a workflow phase whose Run takes its flow's data D.
func typedPhase[D workflow.RunData](name, short string, run func(D) error) workflow.Phase {
	return workflow.Phase{Name: name, Short: short, Run: func(c workflow.RunData) error {
		d, ok := c.(D)
		if !ok {
			return fmt.Errorf("phase %s: run data is %T, not %T", name, c, d)
		}
		return run(d)
	}}
}
