// Package version exposes the pinned versions of versions.env to Go code.
package version

import (
	_ "embed"
	"fmt"
	"strings"
)

//go:embed versions.env
var versionsEnv string

// Pins holds every version u7s builds, runs and pulls.
type Pins struct {
	Kubernetes         string
	CRIO               string
	Etcd               string
	EtcdImageTag       string
	CoreDNS            string
	PauseImageTag      string
	Flannel            string
	CNIPlugins         string
	Runc               string
	Rootlesskit        string
	KubeRouter         string
	NetpolImageTag     string
	StorageLib         string
	LocalPathImageTag  string
	MetricsServer      string
	KubeBench          string
	AgnhostTag         string
	BusyboxTag         string
	GlibcDNSTestingTag string
	AgnhostPrevTag     string
	KittenTag          string
	NautilusTag        string
	NginxTag           string
	NonewprivsTag      string
	NonrootTag         string
	SampleAPIServerTag string
}

// U7s is the version of u7s itself, set by the linker.
var U7s = "dev"

// Pinned are the versions of versions.env.
var Pinned = mustParse(versionsEnv)

func mustParse(env string) Pins {
	vals, err := Parse(env)
	if err != nil {
		panic(err)
	}
	get := func(k string) string {
		v, ok := vals[k]
		if !ok {
			panic(fmt.Sprintf("versions.env: %s is not set", k))
		}
		return v
	}
	return Pins{
		Kubernetes:         get("KUBERNETES_VERSION"),
		CRIO:               get("CRIO_VERSION"),
		Etcd:               get("ETCD_VERSION"),
		EtcdImageTag:       get("ETCD_IMAGE_TAG"),
		CoreDNS:            get("COREDNS_VERSION"),
		PauseImageTag:      get("PAUSE_IMAGE_TAG"),
		Flannel:            get("FLANNEL_VERSION"),
		CNIPlugins:         get("CNI_PLUGINS_VERSION"),
		Runc:               get("RUNC_VERSION"),
		Rootlesskit:        get("ROOTLESSKIT_VERSION"),
		KubeRouter:         get("KUBE_ROUTER_VERSION"),
		NetpolImageTag:     get("NETPOL_IMAGE_TAG"),
		StorageLib:         get("STORAGE_LIB_VERSION"),
		LocalPathImageTag:  get("LOCAL_PATH_IMAGE_TAG"),
		MetricsServer:      get("METRICS_SERVER_VERSION"),
		KubeBench:          get("KUBE_BENCH_VERSION"),
		AgnhostTag:         get("AGNHOST_IMAGE_TAG"),
		BusyboxTag:         get("BUSYBOX_IMAGE_TAG"),
		GlibcDNSTestingTag: get("GLIBC_DNS_TESTING_IMAGE_TAG"),
		AgnhostPrevTag:     get("AGNHOST_PREV_IMAGE_TAG"),
		KittenTag:          get("KITTEN_IMAGE_TAG"),
		NautilusTag:        get("NAUTILUS_IMAGE_TAG"),
		NginxTag:           get("NGINX_IMAGE_TAG"),
		NonewprivsTag:      get("NONEWPRIVS_IMAGE_TAG"),
		NonrootTag:         get("NONROOT_IMAGE_TAG"),
		SampleAPIServerTag: get("SAMPLE_APISERVER_IMAGE_TAG"),
	}
}

// Parse reads KEY=VALUE lines, skipping blanks and # comments.
func Parse(env string) (map[string]string, error) {
	vals := map[string]string{}
	for i, line := range strings.Split(env, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("versions.env line %d: want KEY=VALUE, got %q", i+1, line)
		}
		vals[k] = v
	}
	return vals, nil
}

// Report is what `u7s version` prints: u7s and the stack it runs.
func Report() string {
	p := Pinned
	return fmt.Sprintf("u7s %s\nKubernetes %s (kubelet, kubeadm linked)\ncri-o %s\nrunc %s\netcd %s\ncoredns %s\nflannel %s\nCNI plugins %s\nrootlesskit %s\nkube-router %s (NetworkPolicy)\nsig-storage-lib-external-provisioner %s (local volumes)\nmetrics-server %s (Metrics API)\nkube-bench %s (u7s check cis)\n",
		U7s, p.Kubernetes, p.CRIO, p.Runc, p.Etcd, p.CoreDNS, p.Flannel, p.CNIPlugins, p.Rootlesskit, p.KubeRouter, p.StorageLib, p.MetricsServer, p.KubeBench)
}
