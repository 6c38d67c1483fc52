package version_test

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"

	"github.com/u7s/u7s/internal/version"
)

// upstream is what the pins must agree with: kubeadm's constants for the Kubernetes u7s links, and
// go.mod's requirements.
type upstream struct {
	etcdTag, coreDNS, pause string
	// gomod maps a module path to its version in go.mod, replaced modules to their replacement's.
	gomod map[string]string
}

// pinErrors lists every pin of p that disagrees with u.
func pinErrors(p version.Pins, u upstream) []string {
	var errs []string
	want := func(what, got, want string) {
		if got != want {
			errs = append(errs, fmt.Sprintf("%s is %q, want %q", what, got, want))
		}
	}
	want("ETCD_IMAGE_TAG (kubeadm's DefaultEtcdVersion)", p.EtcdImageTag, u.etcdTag)
	want("ETCD_VERSION (kubeadm's DefaultEtcdVersion)", p.Etcd, "v"+strings.SplitN(u.etcdTag, "-", 2)[0])
	want("COREDNS_VERSION (kubeadm's CoreDNSVersion)", p.CoreDNS, u.coreDNS)
	want("PAUSE_IMAGE_TAG (kubeadm's PauseVersion)", p.PauseImageTag, u.pause)
	want("KUBERNETES_VERSION (go.mod's k8s.io/kubernetes)", p.Kubernetes, u.gomod["k8s.io/kubernetes"])
	want("ROOTLESSKIT_VERSION (go.mod's rootlesskit)", p.Rootlesskit, u.gomod["github.com/rootless-containers/rootlesskit/v3"])
	want("KUBE_ROUTER_VERSION (go.mod's kube-router)", p.KubeRouter, u.gomod["github.com/cloudnativelabs/kube-router/v2"])
	if !strings.HasPrefix(p.NetpolImageTag, p.KubeRouter+"-u7s.") {
		errs = append(errs, fmt.Sprintf("NETPOL_IMAGE_TAG %s is not KUBE_ROUTER_VERSION %s and a revision (-u7s.N)", p.NetpolImageTag, p.KubeRouter))
	}
	want("STORAGE_LIB_VERSION (go.mod's sig-storage-lib-external-provisioner)", p.StorageLib, u.gomod["sigs.k8s.io/sig-storage-lib-external-provisioner/v11"])
	if !strings.HasPrefix(p.LocalPathImageTag, p.StorageLib+"-u7s.") {
		errs = append(errs, fmt.Sprintf("LOCAL_PATH_IMAGE_TAG %s is not STORAGE_LIB_VERSION %s and a revision (-u7s.N)", p.LocalPathImageTag, p.StorageLib))
	}
	// The staging modules (k8s.io/api, client-go, ...) are Kubernetes' own release as v0.MINOR.PATCH.
	staging := "v0." + strings.TrimPrefix(p.Kubernetes, "v1.")
	for _, m := range []string{"k8s.io/api", "k8s.io/apimachinery", "k8s.io/client-go", "k8s.io/kubelet", "k8s.io/kube-proxy"} {
		if v, ok := u.gomod[m]; ok {
			want("go.mod's "+m, v, staging)
		}
	}
	kubeMinor := strings.Join(strings.SplitN(p.Kubernetes, ".", 3)[:2], ".")
	if !strings.HasPrefix(p.CRIO, kubeMinor+".") {
		errs = append(errs, fmt.Sprintf("CRIO_VERSION %s is not of Kubernetes' minor %s", p.CRIO, kubeMinor))
	}
	return errs
}

// readGoMod reads the module's go.mod: requirements, then replacements over them.
func readGoMod(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mods := map[string]string{}
	req := regexp.MustCompile(`^\s*(?:require\s+)?([a-z0-9./-]+\.[a-z0-9./-]+)\s+(v[0-9][^\s]*)(?:\s*//.*)?$`)
	repl := regexp.MustCompile(`^\s*(?:replace\s+)?([a-z0-9./-]+)(?:\s+v\S+)?\s+=>\s+(\S+)\s+(v\S+)`)
	for _, l := range strings.Split(string(b), "\n") {
		if m := repl.FindStringSubmatch(l); m != nil {
			mods[m[1]] = m[3]
		} else if m := req.FindStringSubmatch(l); m != nil {
			if _, replaced := mods[m[1]]; !replaced {
				mods[m[1]] = m[2]
			}
		}
	}
	return mods
}

// TestPinsMatchUpstream ties versions.env to what kubeadm and go.mod say: a pin that drifts from
// them fails here rather than in a node that pulls images kubeadm does not expect.
func TestPinsMatchUpstream(t *testing.T) {
	u := upstream{
		etcdTag: kubeadmconstants.DefaultEtcdVersion,
		coreDNS: kubeadmconstants.CoreDNSVersion,
		pause:   kubeadmconstants.PauseVersion,
		gomod:   readGoMod(t),
	}
	if u.gomod["k8s.io/kubernetes"] == "" || u.gomod["github.com/rootless-containers/rootlesskit/v3"] == "" {
		t.Fatalf("go.mod as read lacks k8s.io/kubernetes or rootlesskit: %v", u.gomod)
	}
	for _, e := range pinErrors(version.Pinned, u) {
		t.Errorf("internal/version/versions.env: %s", e)
	}

	// And the check does see a drifted pin, of each kind.
	drifts := map[string]func(*version.Pins){
		"etcd tag":       func(p *version.Pins) { p.EtcdImageTag = "3.6.7-0" },
		"etcd":           func(p *version.Pins) { p.Etcd = "v3.6.7" },
		"coredns":        func(p *version.Pins) { p.CoreDNS = "v1.14.1" },
		"pause":          func(p *version.Pins) { p.PauseImageTag = "3.10.1" },
		"kubernetes":     func(p *version.Pins) { p.Kubernetes = "v1.36.2" },
		"rootlesskit":    func(p *version.Pins) { p.Rootlesskit = "v3.0.1" },
		"kube-router":    func(p *version.Pins) { p.KubeRouter = "v2.0.1" },
		"netpol tag":     func(p *version.Pins) { p.NetpolImageTag = "v2.0.1-u7s.1" },
		"storage lib":    func(p *version.Pins) { p.StorageLib = "v10.0.1" },
		"local-path tag": func(p *version.Pins) { p.LocalPathImageTag = "v10.0.1-u7s.1" },
		"cri-o minor":    func(p *version.Pins) { p.CRIO = "v1.35.2" },
	}
	for name, drift := range drifts {
		p := version.Pinned
		drift(&p)
		if len(pinErrors(p, u)) == 0 {
			t.Errorf("a drifted %s pin passes the check", name)
		}
	}
}
