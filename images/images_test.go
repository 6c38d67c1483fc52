package images

import (
	"path"
	"slices"
	"strings"
	"testing"

	imageutils "k8s.io/kubernetes/test/utils/image"

	"github.com/u7s/u7s/internal/version"
)

func TestReference(t *testing.T) {
	pause, _ := Lookup("pause")
	busybox, _ := Lookup("busybox")
	agnhost, _ := Lookup("agnhost")
	apiserver, _ := Lookup("kube-apiserver")
	tests := []struct {
		spec     Spec
		registry string
		want     string
	}{
		{pause, "registry.local/k8s-p10", "registry.local/k8s-p10/pause:" + version.Pinned.PauseImageTag},
		{pause, "registry.local/k8s-p10/", "registry.local/k8s-p10/pause:" + version.Pinned.PauseImageTag},
		{apiserver, "registry.altlinux.org/k8s-c10f1", "registry.altlinux.org/k8s-c10f1/kube-apiserver:" + version.Pinned.Kubernetes},
		{busybox, "registry.local/k8s-p10", "registry.local/e2e-test-images/busybox:" + version.Pinned.BusyboxTag},
		{agnhost, "registry.local:5000/k8s-p10", "registry.local:5000/e2e-test-images/agnhost:" + version.Pinned.AgnhostTag},
		{agnhost, "registry.local", "registry.local/e2e-test-images/agnhost:" + version.Pinned.AgnhostTag},
	}
	for _, tt := range tests {
		if got := tt.spec.Reference(tt.registry); got != tt.want {
			t.Errorf("%s.Reference(%q) = %q, want %q", tt.spec.Name, tt.registry, got, tt.want)
		}
	}
}

func TestTags(t *testing.T) {
	p := version.Pinned
	want := map[string]string{
		"kube-apiserver": p.Kubernetes, "kube-controller-manager": p.Kubernetes, "kube-scheduler": p.Kubernetes,
		"kube-proxy": p.Kubernetes, "etcd": p.EtcdImageTag, "coredns": p.CoreDNS, "pause": p.PauseImageTag,
		"flannel": p.Flannel, "u7s-netpol": p.NetpolImageTag, "u7s-local-path": p.LocalPathImageTag, "metrics-server": p.MetricsServer, "agnhost": p.AgnhostTag, "busybox": p.BusyboxTag, "glibc-dns-testing": p.GlibcDNSTestingTag,
		"agnhost-prev": p.AgnhostPrevTag, "kitten": p.KittenTag, "nautilus": p.NautilusTag, "nginx": p.NginxTag,
		"nonewprivs": p.NonewprivsTag, "nonroot": p.NonrootTag, "sample-apiserver": p.SampleAPIServerTag,
	}
	for _, s := range All() {
		if s.Tag != want[s.Name] || s.Tag == "" {
			t.Errorf("%s: tag %q, want %q", s.Name, s.Tag, want[s.Name])
		}
	}
	if len(All()) != len(want) {
		t.Errorf("%d images, want %d", len(All()), len(want))
	}
}

// TestUpstreamTestImages: the test images are at the tags the pinned Kubernetes' e2e tests
// pull (its test/utils/image), in the same repositories below the registry host.
func TestUpstreamTestImages(t *testing.T) {
	for id, name := range map[imageutils.ImageID]string{imageutils.Agnhost: "agnhost", imageutils.BusyBox: "busybox",
		imageutils.GlibcDnsTesting: "glibc-dns-testing", imageutils.AgnhostPrev: "agnhost-prev",
		imageutils.Kitten: "kitten", imageutils.Nautilus: "nautilus", imageutils.Nginx: "nginx",
		imageutils.Nonewprivs: "nonewprivs", imageutils.NonRoot: "nonroot", imageutils.APIServer: "sample-apiserver"} {
		s, _ := Lookup(name)
		upstream := imageutils.GetE2EImage(id) // registry.k8s.io/e2e-test-images/NAME:TAG
		if want := "registry.k8s.io/" + s.Repository + ":" + s.Tag; upstream != want {
			t.Errorf("%s: upstream's e2e pulls %s, u7s builds %s", name, upstream, want)
		}
	}
	pause, _ := Lookup("pause")
	if upstream, want := imageutils.GetPauseImageName(), "registry.k8s.io/pause:"+pause.Tag; upstream != want {
		t.Errorf("upstream's e2e pulls %s, u7s builds %s", upstream, want)
	}
}

// TestConsumerPaths pins the paths the manifests and runtimes run.
func TestConsumerPaths(t *testing.T) {
	tests := []struct {
		image, path, entrypoint string
	}{
		{"kube-apiserver", "/usr/local/bin/kube-apiserver", "/usr/local/bin/kube-apiserver"},
		{"kube-controller-manager", "/usr/local/bin/kube-controller-manager", "/usr/local/bin/kube-controller-manager"},
		{"kube-scheduler", "/usr/local/bin/kube-scheduler", "/usr/local/bin/kube-scheduler"},
		{"kube-proxy", "/usr/local/bin/kube-proxy", "/usr/local/bin/kube-proxy"},
		{"etcd", "/usr/local/bin/etcd", "/usr/local/bin/etcd"},
		{"coredns", "/coredns", "/coredns"},
		{"pause", "/pause", "/pause"},
		{"flannel", "/opt/bin/flanneld", "/opt/bin/flanneld"},
		{"agnhost", "/agnhost", "/agnhost"},
	}
	for _, tt := range tests {
		s, ok := Lookup(tt.image)
		if !ok {
			t.Fatalf("no image %s", tt.image)
		}
		var paths []string
		for _, b := range s.Binaries {
			paths = append(paths, b.Path)
		}
		if !slices.Contains(paths, tt.path) {
			t.Errorf("%s: binaries at %v, want %s", tt.image, paths, tt.path)
		}
		if got := strings.Join(s.Config.Entrypoint, " "); got != tt.entrypoint {
			t.Errorf("%s: entrypoint %q, want %q", tt.image, got, tt.entrypoint)
		}
	}
	for _, name := range []string{"kube-proxy", "flannel"} {
		s, _ := Lookup(name)
		var links []string
		for _, l := range s.Links {
			links = append(links, l.Path)
		}
		for _, want := range []string{"/usr/sbin/iptables", "/usr/sbin/iptables-restore", "/usr/sbin/ip6tables-restore", "/usr/sbin/ip6tables-save"} {
			if !slices.Contains(links, want) {
				t.Errorf("%s lacks %s", name, want)
			}
		}
	}
	if bb, _ := Lookup("busybox"); bb.Busybox == nil || bb.Busybox.Applets != nil || strings.Join(bb.Config.Cmd, " ") != "sh" {
		t.Errorf("busybox image: want every applet and Cmd [sh], got %+v", bb)
	}
	if fl, _ := Lookup("flannel"); fl.Busybox == nil || !slices.Contains(fl.Busybox.Applets, "cp") {
		t.Errorf("flannel lacks busybox cp for its install-cni init container")
	}
}

func TestSpecsWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range All() {
		if seen[s.Name] {
			t.Errorf("image %s twice", s.Name)
		}
		seen[s.Name] = true
		if s.Test != strings.Contains(s.Repository, "/") {
			t.Errorf("%s: test images and only they sit in a repository path (%q)", s.Name, s.Repository)
		}
		var all []string
		for _, b := range s.Binaries {
			all = append(all, b.Path)
		}
		for _, f := range s.HostFiles {
			all = append(all, f.Path)
			if f.Package == "" {
				t.Errorf("%s: host file %s names no package", s.Name, f.Src)
			}
		}
		for _, l := range s.Links {
			all = append(all, l.Path)
		}
		for _, p := range all {
			if !path.IsAbs(p) || path.Clean(p) != p {
				t.Errorf("%s: path %q is not clean and absolute", s.Name, p)
			}
		}
	}
}

func TestSelect(t *testing.T) {
	tests := []struct {
		only    []string
		test    bool
		want    string
		wantErr string
	}{
		{nil, false, "kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause flannel u7s-netpol u7s-local-path metrics-server", ""},
		{nil, true, "kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns pause flannel u7s-netpol u7s-local-path metrics-server busybox agnhost agnhost-prev glibc-dns-testing kitten nautilus nginx nonewprivs nonroot sample-apiserver", ""},
		{[]string{"busybox", "pause"}, false, "pause busybox", ""},
		{[]string{"pause", " "}, true, "pause busybox agnhost agnhost-prev glibc-dns-testing kitten nautilus nginx nonewprivs nonroot sample-apiserver", ""},
		{[]string{"kubelet"}, false, "", `unknown image "kubelet"`},
	}
	for _, tt := range tests {
		got, err := Select(tt.only, tt.test)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Select(%q, %v): error %v, want %q", tt.only, tt.test, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range got {
			names = append(names, s.Name)
		}
		if strings.Join(names, " ") != tt.want {
			t.Errorf("Select(%q, %v) = %v, want %s", tt.only, tt.test, names, tt.want)
		}
	}
}

func TestIsGlob(t *testing.T) {
	if !(HostFile{Src: XtablesDir + "/*.so"}).IsGlob() || (HostFile{Src: "/usr/sbin/nft"}).IsGlob() {
		t.Error("IsGlob is wrong")
	}
}
