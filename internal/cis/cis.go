// Package cis is the u7s profile of the CIS Kubernetes benchmark for kube-bench (u7s check
// cis): derived at run time from kube-bench's own cfg/ (config.yaml and cfg/cis-1.12), it points
// kube-bench's component definitions at what a u7s node has inside its namespace, turns the
// checks that cannot apply to a rootless node (NotApplicable, the one list) into skips, and
// answers the manual checks that u7s can (Automated) with an audit of its own.
package cis

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v3"

	"github.com/u7s/u7s/internal/netpol"
)

const (
	// Upstream is the kube-bench benchmark the profile is derived from (CIS Kubernetes
	// Benchmark v1.12, kube-bench's choice for Kubernetes 1.32 and later).
	Upstream = "cis-1.12"
	// Benchmark is the profile's name, kube-bench's --benchmark.
	Benchmark = "u7s-" + Upstream
	// NotApplicablePrefix starts the remediation of every skipped check.
	NotApplicablePrefix = "Not applicable to a u7s node: "
)

// Check is a check of the benchmark that cannot apply to a u7s node, and why.
type Check struct {
	ID     string
	Reason string
}

// NotApplicable is the one list of checks that cannot apply to a rootless u7s node: the profile
// marks exactly these `type: skip` (kube-bench reports them as INFO) with NotApplicablePrefix and
// the reason as their remediation. What a configuration change can fix does not belong here.
var NotApplicable = []Check{
	{"1.1.12", "the etcd static pod runs as the root of the node's user namespace, which is " +
		"u7s-admin on the host, and kubeadm creates no etcd user: /var/lib/etcd is root:root inside " +
		"the node (u7s-admin's on the host), there is no etcd:etcd to own it"},
	{"4.1.1", "the kubelet is not a systemd unit: the u7s supervisor runs it inside the node's " +
		"namespace, so there is no kubelet service file (its configuration file " +
		"/var/lib/kubelet/config.yaml is checked by 4.1.9)"},
	{"4.1.2", "the kubelet is not a systemd unit: the u7s supervisor runs it inside the node's " +
		"namespace, so there is no kubelet service file to own (its configuration file " +
		"/var/lib/kubelet/config.yaml is checked by 4.1.10)"},
}

// AutomatedCheck is a manual check of the benchmark that a u7s cluster answers itself: the
// profile gives it Audit, a shell command whose output has "Flag: Value" when the check holds,
// and Remediation for when it does not, so that kube-bench reports PASS or FAIL, not WARN.
type AutomatedCheck struct {
	ID, Audit, Flag, Value, Remediation string
}

// Automated are the manual checks u7s answers, the one list.
var Automated = []AutomatedCheck{{
	// "Ensure that the CNI in use supports NetworkPolicies": u7s's policy controller runs, ready,
	// on every node (flannel itself enforces none).
	ID: "5.3.1",
	Audit: fmt.Sprintf(`r=$(kubectl -n %[1]s get daemonset %[2]s -o jsonpath='{.status.numberReady}/{.status.desiredNumberScheduled}'); `+
		`want=${r#*/}; ok=false; [ -n "$want" ] && [ "$want" != 0 ] && [ "${r%%/*}" = "$want" ] && ok=true; `+
		`echo "networkPolicyEnforcedOnEveryNode: $ok (%[2]s ready/nodes: $r)"`, netpol.Namespace, netpol.DaemonSetName),
	Flag:  "networkPolicyEnforcedOnEveryNode",
	Value: "true",
	Remediation: fmt.Sprintf("u7s enforces NetworkPolicy with the DaemonSet %[1]s/%[2]s (kube-router's controller) on every node, "+
		"as flannel enforces none: see why a pod of it is not ready with kubectl -n %[1]s describe daemonset %[2]s; "+
		"u7s status on a node says whether that node enforces; u7s upgrade apply installs it on a cluster made before it.",
		netpol.Namespace, netpol.DaemonSetName),
}}

// Targets are the benchmark's parts a node runs, by role: a worker has no control plane, etcd
// or cluster-wide credentials (the policies).
func Targets(controlPlane bool) []string {
	if controlPlane {
		return []string{"master", "node", "etcd", "controlplane", "policies"}
	}
	return []string{"node"}
}

// Layout is where a node keeps what the benchmark inspects, as seen inside its namespace.
type Layout struct {
	// ProxyKubeconfig and ProxyConfig are the kube-proxy pod's kubeconfig.conf and config.conf
	// (kubeadm's kube-proxy ConfigMap, mounted by the kubelet), symlinks resolved; empty when
	// no kube-proxy pod runs.
	ProxyKubeconfig, ProxyConfig string
}

// kubeletDir is the kubelet's root directory inside the namespace.
const kubeletDir = "/var/lib/kubelet"

// DiscoverLayout finds the kube-proxy pod's files under the kubelet's pod directories (the
// newest kube-proxy pod, if an old one is still being torn down).
func DiscoverLayout() Layout { return discoverLayout(kubeletDir) }

func discoverLayout(kubelet string) Layout {
	dirs, _ := filepath.Glob(filepath.Join(kubelet, "pods", "*", "volumes", "kubernetes.io~configmap", "kube-proxy"))
	var newest string
	var newestTime int64
	for _, d := range dirs {
		st, err := os.Stat(filepath.Join(d, "kubeconfig.conf"))
		if err != nil {
			continue
		}
		if t := st.ModTime().UnixNano(); newest == "" || t > newestTime {
			newest, newestTime = d, t
		}
	}
	if newest == "" {
		return Layout{}
	}
	// The ConfigMap's files are symlinks into a timestamped directory: a check must stat the
	// file itself, not the link (0777).
	resolve := func(name string) string {
		p, err := filepath.EvalSymlinks(filepath.Join(newest, name))
		if err != nil {
			return ""
		}
		return p
	}
	return Layout{ProxyKubeconfig: resolve("kubeconfig.conf"), ProxyConfig: resolve("config.conf")}
}

// component is one of kube-bench's component definitions (cfg/config.yaml): the processes
// that are it and the files the checks' $<component>bin, conf, kubeconfig, svc, cafile and
// datadir stand for (the first that exists, else the default).
type component struct {
	Optional          bool     `yaml:"optional,omitempty"`
	Bins              []string `yaml:"bins,omitempty"`
	Confs             []string `yaml:"confs,omitempty"`
	DefaultConf       string   `yaml:"defaultconf,omitempty"`
	Kubeconfig        []string `yaml:"kubeconfig,omitempty"`
	DefaultKubeconfig string   `yaml:"defaultkubeconfig,omitempty"`
	CAFile            []string `yaml:"cafile,omitempty"`
	DefaultCAFile     string   `yaml:"defaultcafile,omitempty"`
	DataDirs          []string `yaml:"datadirs,omitempty"`
	DefaultDataDir    string   `yaml:"defaultdatadir,omitempty"`
}

// target is one of config.yaml's top-level sections (master, node, etcd, ...).
type target struct {
	Components []string             `yaml:"components"`
	Defs       map[string]component `yaml:",inline"`
}

// manifest is a static pod manifest of kubeadm's.
func manifest(name string) string { return "/etc/kubernetes/manifests/" + name + ".yaml" }

// targets are the component definitions of a u7s node: kubeadm's layout inside the namespace,
// the kubelet run by the supervisor (no service file), kube-proxy a pod of kubeadm's DaemonSet.
func targets(l Layout) map[string]target {
	apiserver := component{Bins: []string{"kube-apiserver"},
		Confs: []string{manifest("kube-apiserver")}, DefaultConf: manifest("kube-apiserver")}
	scheduler := component{Bins: []string{"kube-scheduler"},
		Confs: []string{manifest("kube-scheduler")}, DefaultConf: manifest("kube-scheduler"),
		Kubeconfig: []string{"/etc/kubernetes/scheduler.conf"}, DefaultKubeconfig: "/etc/kubernetes/scheduler.conf"}
	controllerManager := component{Bins: []string{"kube-controller-manager"},
		Confs: []string{manifest("kube-controller-manager")}, DefaultConf: manifest("kube-controller-manager"),
		Kubeconfig:        []string{"/etc/kubernetes/controller-manager.conf"},
		DefaultKubeconfig: "/etc/kubernetes/controller-manager.conf"}
	// Optional as upstream has it: a control plane whose etcd is restarting still gets the rest
	// of its checks.
	etcd := component{Optional: true, Bins: []string{"etcd"},
		Confs: []string{manifest("etcd")}, DefaultConf: manifest("etcd"),
		DataDirs: []string{"/var/lib/etcd"}, DefaultDataDir: "/var/lib/etcd"}
	kubelet := component{Bins: []string{"kubelet"},
		Confs: []string{"/var/lib/kubelet/config.yaml"}, DefaultConf: "/var/lib/kubelet/config.yaml",
		Kubeconfig: []string{"/etc/kubernetes/kubelet.conf"}, DefaultKubeconfig: "/etc/kubernetes/kubelet.conf",
		CAFile: []string{"/etc/kubernetes/pki/ca.crt"}, DefaultCAFile: "/etc/kubernetes/pki/ca.crt"}
	proxy := component{Optional: true, Bins: []string{"kube-proxy"}}
	if l.ProxyConfig != "" {
		proxy.Confs, proxy.DefaultConf = []string{l.ProxyConfig}, l.ProxyConfig
	}
	if l.ProxyKubeconfig != "" {
		proxy.Kubeconfig, proxy.DefaultKubeconfig = []string{l.ProxyKubeconfig}, l.ProxyKubeconfig
	}
	masterKubelet := kubelet
	masterKubelet.Optional = true
	etcdTarget := etcd
	etcdTarget.Optional = false
	return map[string]target{
		"master": {Components: []string{"apiserver", "scheduler", "controllermanager", "etcd", "kubelet"},
			Defs: map[string]component{"apiserver": apiserver, "scheduler": scheduler,
				"controllermanager": controllerManager, "etcd": etcd, "kubelet": masterKubelet}},
		"node": {Components: []string{"kubelet", "proxy"},
			Defs: map[string]component{"kubelet": kubelet, "proxy": proxy}},
		"etcd":         {Components: []string{"etcd"}, Defs: map[string]component{"etcd": etcdTarget}},
		"controlplane": {Components: []string{"apiserver"}, Defs: map[string]component{"apiserver": apiserver}},
		"policies":     {Components: []string{}},
	}
}

// WriteProfile reads kube-bench's cfg/ directory upstream and writes the u7s profile into dir:
// dir/config.yaml (upstream's, with u7s's component definitions and Benchmark in its version and
// target mappings) and dir/<Benchmark>/ (upstream's Upstream checks, NotApplicable skipped).
// dir is kube-bench's --config-dir.
func WriteProfile(upstream, dir string, l Layout) error {
	cfg, err := profileConfig(filepath.Join(upstream, "config.yaml"), l)
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(upstream, Upstream, "*.yaml"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("kube-bench's %s has no %s/*.yaml: not kube-bench's cfg directory", upstream, Upstream)
	}
	sort.Strings(files)
	bench := filepath.Join(dir, Benchmark)
	if err := os.MkdirAll(bench, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), cfg, 0o600); err != nil {
		return err
	}
	reasons := map[string]string{}
	for _, c := range NotApplicable {
		reasons[c.ID] = c.Reason
	}
	automated := map[string]AutomatedCheck{}
	for _, c := range Automated {
		automated[c.ID] = c
	}
	seen := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		out := b
		// The benchmark's own config.yaml overrides settings of the top one: upstream's has
		// none for cis-1.12, and u7s's definitions are in the top one.
		if filepath.Base(f) != "config.yaml" {
			if out, err = profileChecks(b, reasons, automated, seen, filepath.Base(f)); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
		if err := os.WriteFile(filepath.Join(bench, filepath.Base(f)), out, 0o600); err != nil {
			return err
		}
	}
	var missing []string
	for _, c := range NotApplicable {
		if _, ok := seen[c.ID]; !ok {
			missing = append(missing, c.ID)
		}
	}
	for _, c := range Automated {
		if _, ok := seen[c.ID]; !ok {
			missing = append(missing, c.ID)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kube-bench's %s has no check %s: the u7s lists of checks (internal/cis) need updating for it",
			filepath.Join(upstream, Upstream), strings.Join(missing, ", "))
	}
	return nil
}

// profileConfig is upstream's config.yaml with the targets' component definitions replaced
// by u7s's and Benchmark added to version_mapping and target_mapping (with Upstream's targets).
func profileConfig(path string, l Layout) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kube-bench's configuration: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: not a YAML mapping", path)
	}
	root := doc.Content[0]
	for name, t := range targets(l) {
		var n yaml.Node
		if err := n.Encode(t); err != nil {
			return nil, err
		}
		setKey(root, name, &n)
	}
	versions := mapValue(root, "version_mapping")
	tm := mapValue(root, "target_mapping")
	if versions == nil || tm == nil || versions.Kind != yaml.MappingNode || tm.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: no version_mapping or target_mapping", path)
	}
	upstreamTargets := mapValue(tm, Upstream)
	if upstreamTargets == nil || upstreamTargets.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s: target_mapping has no %s", path, Upstream)
	}
	setKey(versions, Benchmark, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: Benchmark})
	ours := *upstreamTargets
	setKey(tm, Benchmark, &ours)
	return encode(&doc)
}

// profileChecks marks the checks of one controls file that are in reasons as skipped and gives
// those in automated their audit, recording in seen which file had each; every other check is
// left exactly as it is.
func profileChecks(b []byte, reasons map[string]string, automated map[string]AutomatedCheck, seen map[string]string, file string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 {
		return nil, errors.New("not one YAML document")
	}
	groups := mapValue(doc.Content[0], "groups")
	if groups == nil || groups.Kind != yaml.SequenceNode {
		return nil, errors.New("no groups: not a kube-bench controls file")
	}
	for _, g := range groups.Content {
		checks := mapValue(g, "checks")
		if checks == nil {
			continue
		}
		for _, c := range checks.Content {
			id := mapValue(c, "id")
			if id == nil {
				continue
			}
			reason, skip := reasons[id.Value]
			auto, automate := automated[id.Value]
			if !skip && !automate {
				continue
			}
			if other, dup := seen[id.Value]; dup {
				return nil, fmt.Errorf("check %s is in both %s and %s", id.Value, other, file)
			}
			seen[id.Value] = file
			if skip {
				setKey(c, "type", str("skip"))
				setKey(c, "remediation", str(NotApplicablePrefix+reason))
				continue
			}
			if err := automateCheck(c, auto); err != nil {
				return nil, fmt.Errorf("check %s: %w", id.Value, err)
			}
		}
	}
	return encode(&doc)
}

// automateCheck turns a manual check into an automated one: u7s's audit and test, upstream's
// text with "(Manual)" made "(Automated by u7s)".
func automateCheck(c *yaml.Node, a AutomatedCheck) error {
	if t := mapValue(c, "type"); t == nil || t.Value != "manual" {
		return errors.New("not a manual check in kube-bench's cfg any more: the u7s list Automated (internal/cis) needs updating for it")
	}
	deleteKey(c, "type")
	if t := mapValue(c, "text"); t != nil {
		t.Value = strings.Replace(t.Value, "(Manual)", "(Automated by u7s)", 1)
	}
	setKey(c, "audit", str(a.Audit))
	var tests yaml.Node
	if err := tests.Encode(map[string]any{"test_items": []any{map[string]any{
		"flag": a.Flag, "compare": map[string]any{"op": "eq", "value": a.Value}}}}); err != nil {
		return err
	}
	setKey(c, "tests", &tests)
	setKey(c, "remediation", str(a.Remediation))
	return nil
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

// deleteKey removes key and its value from the mapping m.
func deleteKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

func encode(doc *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// mapValue is the value of key in mapping m, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setKey sets key in mapping m to v, in place if it is there, else at the end.
func setKey(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}
