package kubeadm

import (
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	kubeadmv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	kubeadmcmd "k8s.io/kubernetes/cmd/kubeadm/app/cmd"
	joinphases "k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/join"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"
	"k8s.io/kubernetes/cmd/kubeadm/app/phases/controlplane"
	etcdphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/etcd"
	configutil "k8s.io/kubernetes/cmd/kubeadm/app/util/config"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/patches"
	"sigs.k8s.io/yaml"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/kubelet"
	"github.com/u7s/u7s/internal/version"
)

// initConfig is n's init documents as `kubeadm init --config` reads them, defaulted and validated.
func initConfig(t *testing.T, n *config.Node) *kubeadmapi.InitConfiguration {
	t.Helper()
	docs, err := InitDocuments(InitOptions{Node: n})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configutil.BytesToInitConfiguration(docs, true)
	if err != nil {
		t.Fatalf("kubeadm rejects the configuration: %v\n%s", err, docs)
	}
	return cfg
}

// kubeadm itself must accept the documents, defaulted and validated as `kubeadm init --config`.
func TestInitDocumentsAcceptedByKubeadm(t *testing.T) {
	for _, mode := range []cgroups.Mode{cgroups.V1Delegated, cgroups.None} {
		n := &config.Node{
			NodeName: "node1", AdvertiseAddress: "192.0.2.10", APIServerPort: 6443,
			PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12",
			ImageRepository: "registry.local/k8s-p10", Cgroup: mode,
		}
		cfg := initConfig(t, n)
		if cfg.KubernetesVersion != version.Pinned.Kubernetes {
			t.Errorf("KubernetesVersion %q", cfg.KubernetesVersion)
		}
		if cfg.ImageRepository != "registry.local/k8s-p10" || cfg.Networking.PodSubnet != "10.244.0.0/16" {
			t.Errorf("repository %q pod subnet %q", cfg.ImageRepository, cfg.Networking.PodSubnet)
		}
		if cfg.LocalAPIEndpoint.AdvertiseAddress != "192.0.2.10" {
			t.Errorf("advertise address %q", cfg.LocalAPIEndpoint.AdvertiseAddress)
		}
		if _, ok := cfg.ComponentConfigs["kubelet.config.k8s.io"]; !ok {
			t.Errorf("no kubelet component config")
		}
		if _, ok := cfg.ComponentConfigs["kubeproxy.config.k8s.io"]; !ok {
			t.Errorf("no kube-proxy component config")
		}
	}
}

// The join document is what kubeadm join --config accepts, with the control-plane part.
func TestJoinDocumentsAcceptedByKubeadm(t *testing.T) {
	n := &config.Node{NodeName: "node2", AdvertiseAddress: "192.0.2.11", APIServerPort: 6443}
	hash := "sha256:" + strings.Repeat("ab", 32)
	docs, err := JoinDocuments(JoinOptions{Node: n, Endpoint: "192.0.2.1:8443", Token: "abcdef.0123456789abcdef",
		CACertHashes: []string{hash}, ControlPlane: true, CertificateKey: strings.Repeat("0", 64)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configutil.BytesToJoinConfiguration(docs, configutil.LoadOrDefaultConfigurationOptions{SkipCRIDetect: true})
	if err != nil {
		t.Fatalf("kubeadm rejects the join configuration: %v\n%s", err, docs)
	}
	if cfg.Discovery.BootstrapToken.APIServerEndpoint != "192.0.2.1:8443" || cfg.Discovery.BootstrapToken.CACertHashes[0] != hash {
		t.Errorf("discovery %+v", cfg.Discovery.BootstrapToken)
	}
	if cfg.ControlPlane == nil || cfg.ControlPlane.LocalAPIEndpoint.AdvertiseAddress != "192.0.2.11" {
		t.Errorf("control plane %+v", cfg.ControlPlane)
	}
	if cfg.Patches == nil || cfg.Patches.Directory != PatchesDir {
		t.Errorf("patches %+v", cfg.Patches)
	}
	if cfg.NodeRegistration.Name != "node2" {
		t.Errorf("node name %q", cfg.NodeRegistration.Name)
	}
}

// The node's kubelet patch names real KubeletConfiguration fields, and what it sets for each
// cgroup mode.
func TestKubeletNodePatch(t *testing.T) {
	for mode, perQOS := range map[cgroups.Mode]bool{cgroups.V1Delegated: true, cgroups.V2Delegated: true, cgroups.None: false} {
		b, err := json.Marshal(kubelet.NodePatch(mode, 30*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		var kc kubeletv1beta1.KubeletConfiguration
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&kc); err != nil {
			t.Fatalf("%s: the patch is not a KubeletConfiguration: %v\n%s", mode, err, b)
		}
		if kc.CgroupsPerQOS == nil || *kc.CgroupsPerQOS != perQOS {
			t.Errorf("%s: cgroupsPerQOS %v, want %v", mode, kc.CgroupsPerQOS, perQOS)
		}
		wantAlloc := "pods"
		if !perQOS {
			wantAlloc = "none"
		}
		if len(kc.EnforceNodeAllocatable) != 1 || kc.EnforceNodeAllocatable[0] != wantAlloc {
			t.Errorf("%s: enforceNodeAllocatable %v, want [%s]", mode, kc.EnforceNodeAllocatable, wantAlloc)
		}
		if kc.RuntimeRequestTimeout.Duration != 15*time.Minute {
			t.Errorf("%s: runtimeRequestTimeout %v, want half the step timeout", mode, kc.RuntimeRequestTimeout)
		}
	}
	if d := kubelet.RuntimeRequestTimeout(time.Minute); d != 2*time.Minute {
		t.Errorf("a short step timeout gives the kubelet %v for a runtime call, want upstream's 2m", d)
	}
}

// kubeadm's Taints: nil keeps its control-plane taint, empty means none.
func TestScheduleWorkloadsTaints(t *testing.T) {
	for _, sched := range []bool{false, true} {
		n := &config.Node{NodeName: "n", AdvertiseAddress: "192.0.2.10", APIServerPort: 6443,
			PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", ScheduleWorkloads: sched}
		cfg := initConfig(t, n)
		tainted := len(cfg.NodeRegistration.Taints) > 0
		if tainted == sched {
			t.Errorf("schedule-workloads %v: taints %v", sched, cfg.NodeRegistration.Taints)
		}
	}
}

// The upgrade configuration loads with kubeadm's own loader, and keeps the node's patches and
// the preflight exceptions init and join have.
func TestUpgradeDocument(t *testing.T) {
	doc, err := UpgradeDocument("v1.35.8", &config.Node{APIServerPort: 6443})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configutil.BytesToUpgradeConfiguration(doc)
	if err != nil {
		t.Fatalf("kubeadm refuses the UpgradeConfiguration: %v\n%s", err, doc)
	}
	if cfg.Apply.KubernetesVersion != "v1.35.8" || cfg.Apply.Patches == nil || cfg.Apply.Patches.Directory != PatchesDir ||
		cfg.Node.Patches == nil || cfg.Node.Patches.Directory != PatchesDir {
		t.Errorf("UpgradeConfiguration = %+v", cfg)
	}
	for _, want := range []string{"SystemVerification", "KubeletVersion"} {
		if !slices.Contains(cfg.Apply.IgnorePreflightErrors, strings.ToLower(want)) && !slices.Contains(cfg.Apply.IgnorePreflightErrors, want) {
			t.Errorf("apply does not ignore %s: %v", want, cfg.Apply.IgnorePreflightErrors)
		}
		if !slices.Contains(cfg.Node.IgnorePreflightErrors, strings.ToLower(want)) && !slices.Contains(cfg.Node.IgnorePreflightErrors, want) {
			t.Errorf("node does not ignore %s: %v", want, cfg.Node.IgnorePreflightErrors)
		}
	}
	// u7s's own workload check replaces kubeadm's one-minute Job.
	if !slices.Contains(cfg.Apply.IgnorePreflightErrors, strings.ToLower(UpgradeWorkloadCheck)) && !slices.Contains(cfg.Apply.IgnorePreflightErrors, UpgradeWorkloadCheck) {
		t.Errorf("apply does not ignore %s: %v", UpgradeWorkloadCheck, cfg.Apply.IgnorePreflightErrors)
	}
}

// TestIgnoredPreflightPorts: kubeadm's port checks are left to u7s for the ports the node
// really uses: the API server's moves with --apiserver-bind-port.
func TestIgnoredPreflightPorts(t *testing.T) {
	got := IgnoredPreflightErrors(7443)
	for _, want := range []string{"Port-7443", "Port-2379", "Port-2380", "Port-10250", "Port-10257", "Port-10259"} {
		if !slices.Contains(got, want) {
			t.Errorf("%s is not ignored: %v", want, got)
		}
	}
	if slices.Contains(got, "Port-6443") {
		t.Errorf("Port-6443 is ignored for an API server on 7443: %v", got)
	}
}

// kubeadm's waits follow the node's step timeout (a slow host's --timeout), through kubeadm's
// own loader, in init, join and upgrade alike.
func TestStepTimeouts(t *testing.T) {
	for _, step := range []string{"", "25m"} {
		want := config.DefaultStepTimeout
		if step != "" {
			want = 25 * time.Minute
		}
		n := &config.Node{NodeName: "n", AdvertiseAddress: "192.0.2.10", APIServerPort: 6443,
			PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", StepTimeout: step}
		ic := initConfig(t, n)
		jdocs, err := JoinDocuments(JoinOptions{Node: n, Endpoint: "192.0.2.1:8443", Token: "abcdef.0123456789abcdef",
			CACertHashes: []string{"sha256:" + strings.Repeat("ab", 32)}})
		if err != nil {
			t.Fatal(err)
		}
		jc, err := configutil.BytesToJoinConfiguration(jdocs, configutil.LoadOrDefaultConfigurationOptions{SkipCRIDetect: true})
		if err != nil {
			t.Fatal(err)
		}
		udoc, err := UpgradeDocument("v1.35.8", n)
		if err != nil {
			t.Fatal(err)
		}
		uc, err := configutil.BytesToUpgradeConfiguration(udoc)
		if err != nil {
			t.Fatal(err)
		}
		for what, got := range map[string]time.Duration{
			"init control plane":  ic.Timeouts.ControlPlaneComponentHealthCheck.Duration,
			"init kubelet":        ic.Timeouts.KubeletHealthCheck.Duration,
			"join TLS bootstrap":  jc.Timeouts.TLSBootstrap.Duration,
			"join discovery":      jc.Timeouts.Discovery.Duration,
			"upgrade manifests":   uc.Timeouts.UpgradeManifests.Duration,
			"upgrade api call x2": 2 * uc.Timeouts.KubernetesAPICall.Duration,
		} {
			if got != want {
				t.Errorf("step %q: %s %s, want %s", step, what, got, want)
			}
		}
	}
}

// The control plane's pods, as kubeadm makes them from init's documents and patches with the
// files writePatches wrote, keep kubeadm's probes but tolerate an unanswered liveness probe for
// a quarter of the step timeout; the startup probe follows the step timeout through timeouts.
func TestControlPlaneProbesFitTheStepTimeout(t *testing.T) {
	n := &config.Node{NodeName: "node1", AdvertiseAddress: "192.0.2.10", APIServerPort: 6443,
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", ImageRepository: "registry.local/k8s-p10",
		Cgroup: cgroups.V1Delegated, StepTimeout: "20m"}
	cfg := initConfig(t, n)
	dir := t.TempDir()
	if err := writePatches(dir, n); err != nil {
		t.Fatal(err)
	}
	pm, err := patches.GetPatchManagerForPath(dir, patches.KnownTargets(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// As kubeadm init does with its configuration's timeouts.
	was := kubeadmapi.GetActiveTimeouts()
	kubeadmapi.SetActiveTimeouts(cfg.Timeouts)
	t.Cleanup(func() { kubeadmapi.SetActiveTimeouts(was) })
	pods := controlplane.GetStaticPodSpecs(&cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, nil)
	pods[kubeadmconstants.Etcd] = etcdphase.GetEtcdPodSpec(&cfg.ClusterConfiguration, &cfg.LocalAPIEndpoint, n.NodeName, nil)
	if len(pods) != 4 {
		t.Fatalf("kubeadm made %d static pods", len(pods))
	}
	for name, pod := range pods {
		b, err := json.Marshal(pod)
		if err != nil {
			t.Fatal(err)
		}
		target := &patches.PatchTarget{Name: name, StrategicMergePatchObject: corev1.Pod{}, Data: b}
		if err := pm.ApplyPatchesToTarget(target); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got corev1.Pod
		if err := yaml.Unmarshal(target.Data, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Spec.Containers) != 1 {
			t.Fatalf("%s: %d containers after the patch", name, len(got.Spec.Containers))
		}
		c := got.Spec.Containers[0]
		if l := c.LivenessProbe; l == nil || l.FailureThreshold != 30 || l.PeriodSeconds != 10 || l.HTTPGet == nil || l.HTTPGet.Path == "" {
			t.Errorf("%s: liveness probe %+v, want kubeadm's with 30 tries (5 of 20 minutes)", name, l)
		}
		if s := c.StartupProbe; s == nil || s.FailureThreshold != 120 {
			t.Errorf("%s: startup probe %+v, want 120 tries (20 minutes)", name, s)
		}
	}
}

// A control plane's join in three parts runs each of kubeadm's join phases once: the outer
// parts skip etcd-join and together every other phase, named as kubeadm names them.
func TestJoinParts(t *testing.T) {
	c := kubeadmcmd.NewKubeadmCommand(strings.NewReader(""), io.Discard, io.Discard)
	p, _, err := c.Find([]string{"join", "phase"})
	if err != nil {
		t.Fatal(err)
	}
	// The command tree lists the phases but the hidden one.
	phases := []string{joinphases.NewCheckEtcdPhase().Name}
	for _, s := range p.Commands() {
		if s.Name() != "help" && s.Name() != "completion" {
			phases = append(phases, s.Name())
		}
	}
	if len(phases) < 5 || !slices.Contains(phases, EtcdJoinPhase) {
		t.Fatalf("kubeadm's join phases: %v (no %s)", phases, EtcdJoinPhase)
	}
	for _, ph := range phases {
		before, after := !slices.Contains(JoinBeforeEtcd, ph), !slices.Contains(JoinAfterEtcd, ph)
		switch {
		case ph == EtcdJoinPhase && (before || after):
			t.Errorf("%s runs in an outer part, not alone", ph)
		case ph != EtcdJoinPhase && before == after:
			t.Errorf("phase %s runs in both outer parts or in neither", ph)
		}
	}
	for _, ph := range append(slices.Clone(JoinBeforeEtcd), JoinAfterEtcd...) {
		if !slices.Contains(phases, ph) {
			t.Errorf("kubeadm has no join phase %s (it has %v)", ph, phases)
		}
	}
	docs, err := JoinDocuments(JoinOptions{Node: &config.Node{NodeName: "cp2", AdvertiseAddress: "192.0.2.12", APIServerPort: 6443}, Endpoint: "10.0.0.1:6443", Token: "abcdef.0123456789abcdef", ControlPlane: true, CertificateKey: strings.Repeat("a", 64)})
	if err != nil {
		t.Fatal(err)
	}
	part, err := WithSkipPhases(docs, JoinBeforeEtcd)
	if err != nil {
		t.Fatal(err)
	}
	var j kubeadmv1.JoinConfiguration
	if err := yaml.UnmarshalStrict(part, &j); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(j.SkipPhases, JoinBeforeEtcd) || j.ControlPlane == nil || j.Discovery.BootstrapToken == nil || j.Discovery.BootstrapToken.Token != "abcdef.0123456789abcdef" {
		t.Errorf("the part's configuration: %+v", j)
	}
	if _, err := WithSkipPhases([]byte("kind: InitConfiguration\n"), nil); err == nil {
		t.Errorf("WithSkipPhases takes an InitConfiguration")
	}
}
