package watch

import (
	"path/filepath"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/kubelet"
	"github.com/u7s/u7s/internal/paths"
)

// BaselineFile is where the baseline of the node's files is kept.
var BaselineFile = filepath.Join(paths.WatchDir, "baseline.json")

// NodeFiles are the files of a node the baseline records: what decides how the kubelet and the
// control plane run and what they trust. A static pod manifest dropped on any node (a worker
// too) is the classic way from a node's files to a privileged pod: the directory is watched.
func NodeFiles() []Watched {
	return []Watched{
		{Pattern: config.Path, Content: true},
		{Pattern: paths.ImageSigningKey, Content: true},
		{Pattern: paths.SysctlConf, Content: true},
		{Pattern: paths.OnHost(kubelet.ConfigFile), Content: true},
		{Pattern: paths.OnHost(kubelet.FlagsFile), Content: true},
		{Pattern: filepath.Join(paths.KubernetesDir, "manifests", "*"), Content: true},
		{Pattern: filepath.Join(paths.ControlPlaneDir, "*"), Content: true},
		{Pattern: filepath.Join(paths.KubeadmPatchesDir, "*"), Content: true},
		// Renewed in place: their modes and owners must stay.
		{Pattern: filepath.Join(paths.KubernetesDir, "*.conf")},
		{Pattern: filepath.Join(paths.PKIDir, "*.key")},
		{Pattern: filepath.Join(paths.PKIDir, "etcd", "*.key")},
	}
}

// RecordNodeBaseline records the baseline of NodeFiles: init, join, upgrade and certificate
// renewal call it after they wrote the node's files.
func RecordNodeBaseline() error {
	return RecordBaseline(BaselineFile, NodeFiles())
}
