package phases

import (
	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/release"
)

// releasePhase keeps the node binaries this u7s carries for the node (internal/release): a
// later package changes them only through u7s upgrade.
func releasePhase() workflow.Phase {
	return phase("release", "Keep the node binaries of this u7s's Kubernetes release (kubelet, cri-o, pinns, runc) in "+paths.ReleasesDir+" for the node", changesHost, func(d *Data) error {
		v := release.Carried()
		d.step("keeping the node binaries of Kubernetes %s in %s", v, paths.ReleasesDir)
		for _, dir := range []string{paths.LibDir, paths.ReleasesDir} {
			if err := host.MakeDir(dir, 0o755, 0, 0); err != nil {
				return err
			}
		}
		s := release.Default()
		if err := s.Import(d.Ctx, v); err != nil {
			return err
		}
		return s.Use(v)
	})
}
