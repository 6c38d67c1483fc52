// Package config is the node's own configuration: what `u7s init` or `u7s join` decided,
// written once to /etc/u7s/node.json and read by the supervisor at every start.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/paths"
)

// Role of the node in the cluster.
type Role string

const (
	ControlPlane Role = "control-plane"
	Worker       Role = "worker"
)

// Node is everything the supervisor needs to bring the node up again after a restart.
type Node struct {
	Role             Role   `json:"role"`
	NodeName         string `json:"nodeName"`
	AdvertiseAddress string `json:"advertiseAddress"` // the host's address: the node's InternalIP
	APIServerPort    int    `json:"apiServerPort"`
	PodCIDR          string `json:"podCIDR"`
	ServiceCIDR      string `json:"serviceCIDR"`
	// Registry is the resolved U7S_REGISTRY; ImageRepository is what kubeadm uses.
	Registry        string `json:"registry"`
	ImageRepository string `json:"imageRepository"`
	PauseImage      string `json:"pauseImage"`
	FlannelImage    string `json:"flannelImage"`
	NetpolImage     string `json:"netpolImage,omitempty"`
	// NoLocalStorage and NoMetricsServer: init installed no default StorageClass, no Metrics API.
	NoLocalStorage  bool `json:"noLocalStorage,omitempty"`
	NoMetricsServer bool `json:"noMetricsServer,omitempty"`
	// LocalStorageDir is where this node keeps its local volumes on the host ("":
	// paths.VolumesDir); inside the node's namespace they are always at paths.VolumesDir.
	LocalStorageDir string   `json:"localStorageDir,omitempty"`
	Insecure        []string `json:"insecureRegistries,omitempty"`
	// ImageSigningKey is the site's public key (paths.ImageSigningKey) when the node runs only
	// images signed with it, from Registry's host only; empty: any image the registries serve.
	ImageSigningKey string `json:"imageSigningKey,omitempty"`
	// RebootWindow is when a coordinated reboot may start, "HH:MM-HH:MM" local time ("": any
	// time); NoCoordinatedReboots turns them off (/var/run/reboot-required is then ignored).
	RebootWindow         string `json:"rebootWindow,omitempty"`
	NoCoordinatedReboots bool   `json:"noCoordinatedReboots,omitempty"`
	// Cgroup is the mode the node runs in; the v1 delegation itself is saved by package cgroups.
	Cgroup cgroups.Mode `json:"cgroup"`
	// Ports forwarded from the host into the namespace at every start, rootlessctl syntax.
	Ports []string `json:"ports"`
	// NodePortForwarding forwards every NodePort from the host automatically.
	NodePortForwarding bool `json:"nodePortForwarding"`
	// ScheduleWorkloads: no control-plane taint, ordinary pods run on this control plane.
	ScheduleWorkloads bool `json:"scheduleWorkloads,omitempty"`
	// Endpoint is the API server this node talks to: the control-plane endpoint (a balancer)
	// if there is one, else the first control plane's address and port.
	Endpoint string `json:"endpoint"`
	// NamespaceNetwork is slirp4netns's network inside the node's namespace, chosen by init or
	// join to overlap none of the host's networks, the pods' and the Services' ("": slirp4netns's
	// 10.0.2.0/24, a node made before u7s chose it). It stays the node's across restarts.
	NamespaceNetwork string `json:"namespaceNetwork,omitempty"`
	// Service is true when systemd runs the node (the u7s unit), false for a detached supervisor.
	Service bool `json:"service"`
	// StepTimeout is the longest one step of the node may take, as a Go duration (init's and
	// join's --timeout; "": DefaultStepTimeout): see StepTimeoutOrDefault.
	StepTimeout string `json:"stepTimeout,omitempty"`
}

// DefaultStepTimeout is how long one step of a node may take unless --timeout says otherwise:
// kubeadm's waits for the control plane, the kubelet, TLS bootstrap and discovery, and u7s's for
// the node to be Ready. A step that takes a minute here takes ten on a host ten times slower (an
// emulated VM, a small board), which this meets without a flag.
const DefaultStepTimeout = 10 * time.Minute

// VolumesHostDir is where the node's local volumes are on the host.
func (n *Node) VolumesHostDir() string {
	if n.LocalStorageDir != "" {
		return n.LocalStorageDir
	}
	return paths.VolumesDir
}

// Timeout is the node's step timeout: StepTimeout, or DefaultStepTimeout.
func (n *Node) Timeout() time.Duration {
	if d, err := time.ParseDuration(n.StepTimeout); err == nil && d > 0 {
		return d
	}
	return DefaultStepTimeout
}

// Path is where the node configuration lives.
var Path = filepath.Join(paths.ConfigDir, "node.json")

// Load reads the node configuration.
func Load() (*Node, error) {
	b, err := os.ReadFile(Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no node configuration at %s: run u7s init or u7s join first", Path)
		}
		return nil, err
	}
	var n Node
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("%s: %w", Path, err)
	}
	// Every later step takes the mode's driver (cgroups.Must): a mode it does not know is
	// refused here.
	if _, err := cgroups.For(n.Cgroup); err != nil {
		return nil, fmt.Errorf("%s: %w", Path, err)
	}
	if d, err := time.ParseDuration(n.StepTimeout); n.StepTimeout != "" && (err != nil || d <= 0) {
		return nil, fmt.Errorf("%s: stepTimeout %q is not a positive duration such as 10m", Path, n.StepTimeout)
	}
	return &n, nil
}

// Save writes the node configuration atomically, readable by the node's user.
func (n *Node) Save() error {
	b, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(Path, append(b, '\n'), 0o644)
}
