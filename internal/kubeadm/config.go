// Package kubeadm drives kubeadm, linked as a library from k8s.io/kubernetes/cmd/kubeadm, with
// typed configuration: v1beta4 InitConfiguration and ClusterConfiguration, and the upstream
// KubeletConfiguration and KubeProxyConfiguration as component config documents.
package kubeadm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	bootstraptokenv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/bootstraptoken/v1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeadmv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/controlplane"
	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/kubelet"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/version"
)

// IgnoredPreflightErrors are kubeadm's own checks that cannot pass inside a user namespace or
// that u7s has already made on the host before changing anything (ports, swap, cgroups,
// kernel settings the namespace cannot read or write), for a node whose API server listens on
// apiPort.
func IgnoredPreflightErrors(apiPort int) []string {
	ignored := []string{
		"SystemVerification", // cgroup v1 is an error for kubeadm since 1.35; the kubelet runs with failCgroupV1: false
		"Swap",               // the kubelet runs with failSwapOn: false
		"FileContent--proc-sys-net-ipv4-ip_forward",
		"FileContent--proc-sys-net-bridge-bridge-nf-call-iptables",
		"Service-Kubelet",     // the u7s supervisor runs the kubelet, not systemd
		"FileExisting-crictl", // cri-o is reached by its socket; crictl is optional
		"FileExisting-conntrack", "FileExisting-socat", "FileExisting-ebtables", "FileExisting-ethtool", "FileExisting-tc",
		"KubeletVersion",
		"Mem", "NumCPU",
	}
	// The node's host ports are checked by u7s on the host (and forwarded into the namespace),
	// and so are the controller-manager's and the scheduler's, which stay inside it.
	for _, p := range config.PortsOf(config.ControlPlane, apiPort) {
		if p.Proto == "tcp" {
			ignored = append(ignored, fmt.Sprintf("Port-%d", p.Port))
		}
	}
	return append(ignored, fmt.Sprintf("Port-%d", kubeadmconstants.KubeControllerManagerPort), fmt.Sprintf("Port-%d", kubeadmconstants.KubeSchedulerPort))
}

// InitOptions are the choices of `u7s init` that reach kubeadm.
type InitOptions struct {
	Node                 *config.Node
	ControlPlaneEndpoint string
	// Token is the bootstrap token init creates (the printed join commands carry it).
	Token          string
	CertificateKey string
}

// InitDocuments returns the multi-document kubeadm configuration of a first control plane.
func InitDocuments(o InitOptions) ([]byte, error) {
	n := o.Node
	initCfg := &kubeadmv1.InitConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: kubeadmv1.SchemeGroupVersion.String(), Kind: "InitConfiguration"},
		LocalAPIEndpoint: kubeadmv1.APIEndpoint{
			AdvertiseAddress: n.AdvertiseAddress,
			BindPort:         int32(n.APIServerPort),
		},
		NodeRegistration: nodeRegistration(n),
		CertificateKey:   o.CertificateKey,
		Patches:          &kubeadmv1.Patches{Directory: PatchesDir},
		Timeouts:         timeouts(n.Timeout()),
	}
	if o.Token != "" {
		bt, err := bootstraptokenv1.NewBootstrapTokenString(o.Token)
		if err != nil {
			return nil, fmt.Errorf("bootstrap token: %w", err)
		}
		initCfg.BootstrapTokens = []bootstraptokenv1.BootstrapToken{{
			Token: bt, Groups: []string{"system:bootstrappers:kubeadm:default-node-token"},
			Usages: []string{"signing", "authentication"}, TTL: &metav1.Duration{Duration: 24 * time.Hour},
		}}
	}
	sans := []string{n.AdvertiseAddress, "127.0.0.1", "localhost", n.NodeName}
	if h, _, err := net.SplitHostPort(o.ControlPlaneEndpoint); err == nil {
		sans = append(sans, h)
	} else if o.ControlPlaneEndpoint != "" {
		sans = append(sans, o.ControlPlaneEndpoint)
	}
	clusterCfg := &kubeadmv1.ClusterConfiguration{
		TypeMeta:             metav1.TypeMeta{APIVersion: kubeadmv1.SchemeGroupVersion.String(), Kind: "ClusterConfiguration"},
		KubernetesVersion:    version.Pinned.Kubernetes,
		ImageRepository:      n.ImageRepository,
		ControlPlaneEndpoint: o.ControlPlaneEndpoint,
		Networking: kubeadmv1.Networking{
			PodSubnet:     n.PodCIDR,
			ServiceSubnet: n.ServiceCIDR,
			DNSDomain:     "cluster.local",
		},
		APIServer: kubeadmv1.APIServer{CertSANs: dedupe(sans)},
		ControllerManager: kubeadmv1.ControlPlaneComponent{
			ExtraArgs: []kubeadmv1.Arg{{Name: "flex-volume-plugin-dir", Value: kubelet.VolumePluginDir}},
		},
		Etcd: kubeadmv1.Etcd{Local: &kubeadmv1.LocalEtcd{
			DataDir: kubeadmv1.DefaultEtcdDataDir,
			// The host's address is not local inside the namespace (see package node): etcd
			// listens on every address so that both the port forwards (which dial 127.0.0.1)
			// and local clients reach it.
			ExtraArgs: []kubeadmv1.Arg{
				{Name: "listen-client-urls", Value: fmt.Sprintf("https://0.0.0.0:%d", kubeadmconstants.EtcdListenClientPort)},
				{Name: "listen-peer-urls", Value: fmt.Sprintf("https://0.0.0.0:%d", kubeadmconstants.EtcdListenPeerPort)},
				{Name: "listen-metrics-urls", Value: fmt.Sprintf("http://127.0.0.1:%d", kubeadmconstants.EtcdMetricsPort)},
			},
		}},
		CertificatesDir: paths.PKIDir,
	}
	controlplane.APIServer(&clusterCfg.APIServer)
	controlplane.ControllerManager(&clusterCfg.ControllerManager)
	controlplane.Scheduler(&clusterCfg.Scheduler)
	return marshalDocuments(initCfg, clusterCfg, kubelet.Config(), kubeProxyConfig(n))
}

func nodeRegistration(n *config.Node) kubeadmv1.NodeRegistrationOptions {
	return kubeadmv1.NodeRegistrationOptions{
		Name:      n.NodeName,
		CRISocket: "unix://" + paths.CRIOSocket,
		KubeletExtraArgs: []kubeadmv1.Arg{
			// The host's address, not slirp4netns's 10.0.2.100, which every node shares.
			{Name: "node-ip", Value: n.AdvertiseAddress},
		},
		IgnorePreflightErrors: IgnoredPreflightErrors(n.APIServerPort),
		// nil: kubeadm's control-plane taint on a control plane; empty: none (ordinary pods
		// may run there, as on a single-node cluster).
		Taints:          taints(n),
		ImagePullPolicy: "IfNotPresent",
		ImagePullSerial: ptr.To(false),
	}
}

// kubeProxyConfig runs kube-proxy in iptables mode (NodePorts then answer on 127.0.0.1, where
// the port driver connects) and stops it from writing conntrack sysctls the namespace may not.
func kubeProxyConfig(n *config.Node) *kubeproxyv1alpha1.KubeProxyConfiguration {
	zero := metav1.Duration{}
	return &kubeproxyv1alpha1.KubeProxyConfiguration{
		TypeMeta:    metav1.TypeMeta{APIVersion: "kubeproxy.config.k8s.io/v1alpha1", Kind: "KubeProxyConfiguration"},
		Mode:        "iptables",
		ClusterCIDR: n.PodCIDR,
		// A new NodePort answers through the host's forward as soon as kube-proxy has its
		// rules; the 1s default batching is most of that delay on a small node.
		IPTables: kubeproxyv1alpha1.KubeProxyIPTablesConfiguration{MinSyncPeriod: metav1.Duration{Duration: 100 * time.Millisecond}},
		Conntrack: kubeproxyv1alpha1.KubeProxyConntrackConfiguration{
			MaxPerCore:            ptr.To[int32](0),
			TCPEstablishedTimeout: &zero,
			TCPCloseWaitTimeout:   &zero,
		},
	}
}

func taints(n *config.Node) []corev1.Taint {
	if n.ScheduleWorkloads {
		return []corev1.Taint{}
	}
	return nil
}

// WritePatches writes this node's kubeadm patches into PatchesDir: its kubelet settings, and
// the control plane's liveness probes, fitted to its step timeout.
func WritePatches(n *config.Node) error { return writePatches(PatchesDir, n) }

func writePatches(dir string, n *config.Node) error {
	patches := map[string]any{"kubeletconfiguration": kubelet.NodePatch(n.Cgroup, n.Timeout())}
	for target, p := range livenessPatches(n.Timeout()) {
		patches[target] = p
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for target, p := range patches {
		b, err := json.MarshalIndent(p, "", "  ")
		if err != nil {
			return err
		}
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, target+"+strategic.json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// probePeriod is the period of kubeadm's liveness probes of the control plane's static pods.
const probePeriod = 10 * time.Second

// staticPodPatch is a strategic merge patch of the liveness probe of a static pod's container.
type staticPodPatch struct {
	Spec struct {
		Containers []livenessPatch `json:"containers"`
	} `json:"spec"`
}

type livenessPatch struct {
	Name          string `json:"name"`
	LivenessProbe struct {
		FailureThreshold int32 `json:"failureThreshold"`
	} `json:"livenessProbe"`
}

// livenessPatches gives the control plane's static pods (kubeadm's patch targets, each
// container named as its target) liveness probes that a node of this step timeout meets.
// kubeadm's startup probes follow the step timeout already (timeouts), but its liveness probes
// kill a component that has not answered for 80 s (8 tries, 10 s apart): on a host ten times
// slower than this machine, or as loaded, a busy API server or etcd is killed, starts again
// slowly, and is killed again. An unanswered probe is tolerated for a quarter of a step (at
// least kubeadm's 8 tries).
func livenessPatches(step time.Duration) map[string]staticPodPatch {
	out := map[string]staticPodPatch{}
	for _, c := range []string{kubeadmconstants.Etcd, kubeadmconstants.KubeAPIServer, kubeadmconstants.KubeControllerManager, kubeadmconstants.KubeScheduler} {
		var p staticPodPatch
		p.Spec.Containers = []livenessPatch{{Name: c}}
		p.Spec.Containers[0].LivenessProbe.FailureThreshold = int32(max(8, step/4/probePeriod))
		out[c] = p
	}
	return out
}

func marshalDocuments(docs ...any) ([]byte, error) {
	var buf bytes.Buffer
	for i, d := range docs {
		b, err := yaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("encoding kubeadm document %d: %w", i, err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// UpgradeWorkloadCheck is kubeadm upgrade apply's health check that a Job runs, which u7s
// replaces (upgrade.WorkloadRuns).
const UpgradeWorkloadCheck = "CreateJob"

// UpgradeDocument is the UpgradeConfiguration of kubeadm upgrade apply (to version) and
// kubeadm upgrade node: the same preflight exceptions as init and join, and this node's
// patches, which kubeadm would otherwise drop when it rewrites the kubelet's configuration.
func UpgradeDocument(version string, n *config.Node) ([]byte, error) {
	patches := &kubeadmv1.Patches{Directory: PatchesDir}
	return marshalDocuments(&kubeadmv1.UpgradeConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: kubeadmv1.SchemeGroupVersion.String(), Kind: "UpgradeConfiguration"},
		Apply: kubeadmv1.UpgradeApplyConfiguration{
			KubernetesVersion: version,
			// u7s runs the workload check itself first, with the node's deadline
			// (upgrade.WorkloadRuns): kubeadm's waits one fixed minute.
			IgnorePreflightErrors: append(IgnoredPreflightErrors(n.APIServerPort), UpgradeWorkloadCheck),
			Patches:               patches,
		},
		Node: kubeadmv1.UpgradeNodeConfiguration{
			IgnorePreflightErrors: IgnoredPreflightErrors(n.APIServerPort),
			Patches:               patches,
		},
		Timeouts: timeouts(n.Timeout()),
	})
}

// timeouts are kubeadm's waits for a node whose steps may take up to step each (its defaults,
// 4 to 5 minutes, fail on a host ten times slower than this machine); its per-call limits get
// half of it, at least their defaults: an emulated VM's API server, just up, took more than two
// minutes to answer init's first write.
func timeouts(step time.Duration) *kubeadmv1.Timeouts {
	d := func(t time.Duration) *metav1.Duration { return &metav1.Duration{Duration: t} }
	return &kubeadmv1.Timeouts{
		ControlPlaneComponentHealthCheck: d(step),
		KubeletHealthCheck:               d(step),
		TLSBootstrap:                     d(step),
		Discovery:                        d(step),
		UpgradeManifests:                 d(step),
		KubernetesAPICall:                d(max(step/2, time.Minute)),
		EtcdAPICall:                      d(max(step/2, 2*time.Minute)),
	}
}
