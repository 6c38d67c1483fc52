// Package paths names every file system location u7s uses, following the FHS so that
// `make install` and the rpm lay out the same tree.
package paths

import (
	"path/filepath"
	"strings"
)

const (
	// User is the system user whose user namespace holds the whole node.
	User = "u7s-admin"
	// Home is User's home; all node state lives below it.
	Home = "/var/lib/u7s-admin"

	// Binary is the installed u7s binary.
	Binary = "/usr/bin/u7s"
	// LibexecBin holds the node binaries this u7s carries (kubelet, crio, pinns, runc): the
	// installed release, which init, join and upgrade copy into ReleasesDir.
	LibexecBin = "/usr/libexec/u7s/bin"
	// ReleasesDir holds the node binaries of each Kubernetes release a node has run, one
	// directory per version (root's), so that installing a newer package changes nothing a
	// running node runs until u7s upgrade moves it.
	ReleasesDir = LibDir + "/releases"
	// LibDir is root's state of u7s on the host.
	LibDir = "/var/lib/u7s"
	// VolumesDir holds the node's local persistent volumes (package localpath), one directory
	// each; owned by User, mode 0700.
	VolumesDir = LibDir + "/volumes"
	// WatchDir holds u7s check all's state between runs (where it stopped reading the audit
	// log) and its findings as a Prometheus textfile.
	WatchDir = LibDir + "/watch"
	// NodeBin is the release the node runs: a symbolic link to a directory of ReleasesDir.
	NodeBin = ReleasesDir + "/current"
	// CNIBin holds the CNI plugins (bridge, host-local, loopback, portmap, and flannel, which is u7s).
	CNIBin = "/usr/libexec/u7s/cni"
	// ConfigDir holds the host-side configuration of u7s.
	ConfigDir = "/etc/u7s"
	// KubernetesDir is kubeadm's /etc/kubernetes; on the host it is owned by User so that
	// the namespace's root (User on the host) can write it.
	KubernetesDir = "/etc/kubernetes"
	// PKIDir is kubeadm's certificates directory (its CertificatesDir).
	PKIDir = KubernetesDir + "/pki"
	// AdminKubeconfig is the cluster-admin kubeconfig usable by root on the host.
	AdminKubeconfig = KubernetesDir + "/admin.conf"

	// RunDir is the runtime directory (sockets, pids), owned by User.
	RunDir = "/run/u7s"
)

// State is the persistent node state directory, owned by User.
var State = filepath.Join(Home, ".local/share/u7s")

var (
	// RootlesskitStateDir holds rootlesskit's child_pid and api.sock.
	RootlesskitStateDir = filepath.Join(RunDir, "rootlesskit")
	// RootlesskitAPISocket is the rootlesskit API (ports, info).
	RootlesskitAPISocket = filepath.Join(RootlesskitStateDir, "api.sock")
	// ReadyFile is written by the in-namespace init once cri-o answers.
	ReadyFile = filepath.Join(RunDir, "ready")
	// SupervisorPIDFile holds the PID of the supervisor.
	SupervisorPIDFile = filepath.Join(RunDir, "supervisor.pid")
	// CRIOSocket is cri-o's CRI socket; the same path inside the namespace and on the host.
	CRIOSocket = filepath.Join(RunDir, "crio", "crio.sock")
	// LogDir holds the supervisor's, cri-o's and kubelet's logs.
	LogDir = "/var/log/u7s"
	// PodLogDir is where the kubelet keeps containers' logs, one directory per pod, as the
	// namespace sees it (OnHost: where it is on the host).
	PodLogDir = "/var/log/pods"
	// FailedLogDir keeps the logs of each init or join that failed and was undone, one
	// directory each (the undo removes LogDir).
	FailedLogDir = "/var/log/u7s-failed"
	// SupervisorLog is where a detached supervisor writes (under systemd: the journal).
	SupervisorLog = LogDir + "/supervisor.log"
	// AuditLogDir holds the API server's audit log, on the host's disk.
	AuditLogDir = LogDir + "/audit"
	// ControlPlaneDir holds the API server's policy files (audit, admission, anonymous
	// access, Secrets encryption), the same on every control plane.
	ControlPlaneDir = KubernetesDir + "/u7s"
)

const (
	// HostStateFile records what u7s init changed on the host (created user, sub-id ranges,
	// previous sysctl values) so that u7s reset undoes exactly that.
	HostStateFile = ConfigDir + "/host-state.json"
	// SysctlConf holds the sysctls u7s init set, so that they survive a reboot.
	SysctlConf = "/etc/sysctl.d/90-u7s.conf"
	// ImageSigningKey is the site's public image-signing key, given to init or join.
	ImageSigningKey = ConfigDir + "/image-signing.pub"
	// CgroupDelegationFile describes the cgroup v1 subtrees root delegated to User; the
	// supervisor joins them and the namespace mounts them.
	CgroupDelegationFile = ConfigDir + "/cgroup-delegation.json"
	// KubeadmPatchesDir holds kubeadm's patches of this node: its own kubelet settings.
	KubeadmPatchesDir = ConfigDir + "/kubeadm-patches"
	// MaintenanceMarker records a reboot the maintenance agent asked for; it survives the
	// reboot (not under /run).
	MaintenanceMarker = ConfigDir + "/maintenance-reboot"
	// MaintenanceAsked records that the agent asked the cluster for a reboot (its request
	// annotation is on the Node): with neither it nor MaintenanceMarker nor the sentinel there,
	// the agent has nothing to do, and u7s-maintenance.service's conditions skip it.
	MaintenanceAsked = ConfigDir + "/maintenance-asked"
	// EtcdBackupDir holds a control plane's scheduled and pre-upgrade etcd snapshots (reset
	// leaves them).
	EtcdBackupDir = "/var/backups/u7s/etcd"
	// PackagedSysctlConf is where the distribution package ships SysctlConf's text.
	PackagedSysctlConf = "/usr/lib/sysctl.d/90-u7s.conf"
)

// KubeletKubeconfig is the kubelet's kubeconfig (system:node:NAME), on every node: the
// node's own credentials for the host-side u7s (NodePort forwarding, its own Node object).
const KubeletKubeconfig = KubernetesDir + "/kubelet.conf"

const (
	// KubeBench is kube-bench, the CIS Kubernetes benchmark runner of `u7s check cis`.
	KubeBench = LibexecBin + "/kube-bench"
	// KubeBenchCfg is kube-bench's upstream cfg/ directory (config.yaml and one directory per
	// benchmark); u7s check cis derives the u7s profile from it at run time.
	KubeBenchCfg = "/usr/share/u7s/kube-bench/cfg"
)

// NamespaceBinds are the node's persistent directories: kept under State on the host (State
// is the key's directory), seen at their usual paths inside the namespace.
var NamespaceBinds = []struct {
	State, Target string
	// Private directories are 0700 (CIS 1.1.11: etcd's data), the others 0755.
	Private bool
}{
	{"kubelet", "/var/lib/kubelet", false},
	{"etcd", "/var/lib/etcd", true},
	{"cni/lib", "/var/lib/cni", false},
	// containers/image's defaults for root (the namespace's root), e.g. its sigstore: the
	// host's /var/lib/containers is root's, not the node's.
	{"containers", "/var/lib/containers", false},
	{"cni/net.d", "/etc/cni/net.d", false},
	{"log/pods", PodLogDir, false},
	{"log/containers", "/var/log/containers", false},
}

// OnHost maps a path as the namespace sees it to where it is on the host (paths outside
// NamespaceBinds are the same on both sides).
func OnHost(inside string) string {
	clean := filepath.Clean(inside)
	for _, b := range NamespaceBinds {
		if rest, ok := strings.CutPrefix(clean, b.Target); ok && (rest == "" || rest[0] == '/') {
			return filepath.Join(State, b.State) + rest
		}
	}
	return inside
}
