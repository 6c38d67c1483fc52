// Package kubelet configures the kubelet for a user namespace and keeps it running there.
package kubelet

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/paths"
)

const (
	// RootDir is the kubelet's root directory inside the namespace (bind-mounted from the
	// node's state directory).
	RootDir = "/var/lib/kubelet"
	// ConfigFile and FlagsFile are written by kubeadm's kubelet-start phase.
	ConfigFile = RootDir + "/config.yaml"
	FlagsFile  = RootDir + "/kubeadm-flags.env"
	// VolumePluginDir replaces /usr/libexec/kubernetes/kubelet-plugins/volume/exec: /usr is
	// read-only inside the namespace. The controller-manager gets the same path.
	VolumePluginDir = RootDir + "/volumeplugins"
)

// PodPidsLimit is the most processes a pod may have (its cgroup's pids.max).
const PodPidsLimit = 4096

// Config returns the cluster-wide KubeletConfiguration of rootless nodes (the upstream type,
// which kubeadm takes as a component config document and stores in the kubelet-config
// ConfigMap). What differs between nodes (the cgroup mode) is NodePatch's.
func Config() *kubeletv1beta1.KubeletConfiguration {
	return &kubeletv1beta1.KubeletConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		// Alpha through 1.36: lets the kubelet ignore the errors of what a user namespace forbids
		// (sysctls, oom_score_adj, some /proc files).
		FeatureGates:           map[string]bool{"KubeletInUserNamespace": true},
		CgroupDriver:           "cgroupfs",
		CgroupRoot:             "/",
		FailSwapOn:             ptr.To(false),
		FailCgroupV1:           ptr.To(false),
		CgroupsPerQOS:          ptr.To(true),
		EnforceNodeAllocatable: []string{"pods"},
		// A fork bomb in one pod must not take the node's (and u7s-admin's) process quota:
		// CIS 4.2.13. Upstream's default is no limit.
		PodPidsLimit: ptr.To[int64](PodPidsLimit),
		// cadvisor's disk metrics need it on (else the eviction manager never syncs).
		LocalStorageCapacityIsolation: ptr.To(true),
		EvictionHard: map[string]string{
			"nodefs.available":  "3%",
			"imagefs.available": "3%",
			"memory.available":  "100Mi",
		},
		VolumePluginDir:          VolumePluginDir,
		ContainerRuntimeEndpoint: "unix://" + paths.CRIOSocket,
		ResolverConfig:           ptr.To("/etc/resolv.conf"),
		SerializeImagePulls:      ptr.To(false),
		ProtectKernelDefaults:    false,
		RotateCertificates:       true,
		// The serving certificate is the cluster CA's (the API server checks it:
		// --kubelet-certificate-authority); u7s's approver signs off only a node's own names.
		ServerTLSBootstrap: true,
		// Every container gets the runtime's default seccomp profile unless its pod says otherwise.
		SeccompDefault: ptr.To(true),
	}
}

// RuntimeRequestTimeout is how long the kubelet waits for one call to cri-o on a node whose
// steps may take up to step: half of it, at least upstream's 2 minutes. On the emulated VM,
// loaded, creating a container took longer than 2 minutes again and again; each call that
// timed out was made again from the start, and the pod never ran.
func RuntimeRequestTimeout(step time.Duration) time.Duration { return max(2*time.Minute, step/2) }

// NodePatch is this node's strategic-merge patch of the KubeletConfiguration (kubeadm's
// "kubeletconfiguration" patch target, applied at init and join on this node only). Without
// cgroup delegation there are no per-QoS cgroups and nothing to enforce; kubeadm turns an
// empty list back into ["pods"], so "none" is spelt out. The kubelet's limit on each call to
// cri-o follows the node's step timeout (RuntimeRequestTimeout). The keys are the upstream
// type's JSON names (a unit test decodes the patch strictly into it).
func NodePatch(mode cgroups.Mode, step time.Duration) map[string]any {
	limits := cgroups.Must(mode).Limits()
	p := map[string]any{
		"apiVersion":            "kubelet.config.k8s.io/v1beta1",
		"kind":                  "KubeletConfiguration",
		"cgroupsPerQOS":         limits,
		"runtimeRequestTimeout": RuntimeRequestTimeout(step).String(),
	}
	if !limits {
		p["enforceNodeAllocatable"] = []string{"none"}
	} else {
		p["enforceNodeAllocatable"] = []string{"pods"}
	}
	return p
}
