// Package manifests holds the Kubernetes objects u7s deploys into the cluster, as YAML
// embedded in the binary. The YAML is data: Go code (e.g. internal/flannel) decodes it
// into typed objects and sets what depends on the node and the pinned versions.
package manifests

import (
	"embed"
	"fmt"
)

// KubeFlannel is flannel's DaemonSet and the objects it needs.
const KubeFlannel = "kube-flannel.yml"

// Netpol is the NetworkPolicy controller's DaemonSet and the objects it needs.
const Netpol = "u7s-netpol.yml"

// MetricsServer is metrics-server's Deployment, the Metrics API's APIService and what they need.
const MetricsServer = "metrics-server.yml"

// LocalPath is the default StorageClass and its provisioner's DaemonSet (package localpath).
const LocalPath = "u7s-local-path.yml"

//go:embed *.yml
var files embed.FS

// Get returns the embedded manifest name, e.g. KubeFlannel.
func Get(name string) ([]byte, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("manifest %q is not embedded in u7s: %w", name, err)
	}
	return b, nil
}
