package registry

import (
	"fmt"
	"strings"

	"github.com/u7s/u7s/images"
	"github.com/u7s/u7s/internal/version"
)

// Image is one image a node pulls.
type Image struct {
	Name string // short name, e.g. "kube-apiserver"
	Ref  string // full reference, e.g. "registry.local/k8s-p10/kube-apiserver:v1.35.8"
}

// ImageRepository is what kubeadm's ClusterConfiguration.ImageRepository must be so that kubeadm
// names exactly the images of Images (kubeadm itself maps registry.k8s.io to coredns/coredns).
func (r Resolution) ImageRepository() string {
	if r.Native {
		return NativeRegistry
	}
	return r.Value
}

// FlannelImage is the flannel image: flannel's own upstream image for the native registry.
func (r Resolution) FlannelImage(p version.Pins) string {
	if r.Native {
		return NativeFlannelRepository + ":" + p.Flannel
	}
	return r.Value + "/flannel:" + p.Flannel
}

// NetpolImage is the NetworkPolicy controller's image: kube-router's own upstream image for the
// native registry.
func (r Resolution) NetpolImage(p version.Pins) string {
	if r.Native {
		return NativeKubeRouterRepository + ":" + p.KubeRouter
	}
	return r.Value + "/u7s-netpol:" + p.NetpolImageTag
}

// LocalPathImage is the default StorageClass's provisioner: u7s's own, from the registry's
// value even for the native registry, which has no such image (init then installs none).
func (r Resolution) LocalPathImage(p version.Pins) string {
	if r.Native {
		return ""
	}
	return r.Value + "/u7s-local-path:" + p.LocalPathImageTag
}

// MetricsServerImage is metrics-server: its own upstream image for the native registry.
func (r Resolution) MetricsServerImage(p version.Pins) string {
	if r.Native {
		return NativeMetricsServerRepository + ":" + p.MetricsServer
	}
	return r.Value + "/metrics-server:" + p.MetricsServer
}

// PauseImage is the sandbox image (cri-o's pause_image and kubeadm's expectation).
func (r Resolution) PauseImage(p version.Pins) string {
	return r.ImageRepository() + "/pause:" + p.PauseImageTag
}

// Images are every image init and join pull, in the catalogue's order (package images is the
// one list of images and tags), as this resolution names them.
func (r Resolution) Images() []Image { return r.catalogue(false) }

// TestImages are the images the node's smoke and conformance tests run, from the registry host of
// the value, where upstream's e2e tests look for them: <host>/e2e-test-images/busybox and
// <host>/e2e-test-images/agnhost (registry.k8s.io's for the native registry).
func (r Resolution) TestImages() []Image { return r.catalogue(true) }

func (r Resolution) catalogue(test bool) []Image {
	var imgs []Image
	for _, s := range images.All() {
		if s.Test != test {
			continue
		}
		ref := s.Reference(r.ImageRepository())
		switch {
		case s.Test:
			ref = s.Reference(r.Value)
		case r.Native && s.Name == "coredns":
			ref = NativeRegistry + "/coredns/coredns:" + s.Tag
		case r.Native && s.Name == "flannel":
			ref = NativeFlannelRepository + ":" + s.Tag
		case r.Native && s.Name == "u7s-netpol":
			ref = NativeKubeRouterRepository + ":" + version.Pinned.KubeRouter
		case r.Native && s.Name == "metrics-server":
			ref = NativeMetricsServerRepository + ":" + s.Tag
		case r.Native && s.Name == "u7s-local-path":
			continue // none upstream: a native cluster has no default StorageClass from u7s
		}
		imgs = append(imgs, Image{Name: s.Name, Ref: ref})
	}
	return imgs
}

// Refs are the references of imgs.
func Refs(imgs []Image) []string {
	refs := make([]string, len(imgs))
	for i, img := range imgs {
		refs[i] = img.Ref
	}
	return refs
}

// Insecure reports whether ref (an image reference, repository or registry host) lives on a
// plain-HTTP registry: only the specification's local registry, registry.local[:port], is.
func Insecure(ref string) bool {
	host := images.RegistryHost(ref)
	if h, port, ok := strings.Cut(host, ":"); ok {
		if port == "" || strings.Trim(port, "0123456789") != "" {
			return false
		}
		host = h
	}
	return strings.EqualFold(host, LocalRegistryHost)
}

// InsecureRegistries are the registries cri-o must reach over plain HTTP for r (its
// insecure_registries, or `insecure = true` in registries.conf): the local registry when r uses it.
func InsecureRegistries(r Resolution) []string {
	if Insecure(r.Value) {
		return []string{images.RegistryHost(r.Value)}
	}
	return nil
}

// E2ERepoList is the KUBE_TEST_REPO_LIST file of upstream's e2e suite for r: its test images from
// the registry host of the value, where u7s images build puts them (images.Spec.Reference), pause
// and etcd from the node images' repository.
func (r Resolution) E2ERepoList() string {
	host := images.RegistryHost(r.Value)
	var b strings.Builder
	for _, kv := range [][2]string{
		{"promoterE2eRegistry", host + "/" + images.TestRepository},
		{"buildImageRegistry", host + "/build-image"},
		{"gcRegistry", r.ImageRepository()},
		{"gcEtcdRegistry", r.ImageRepository()},
		{"sigStorageRegistry", host + "/sig-storage"},
		{"privateRegistry", host + "/k8s-authenticated-test"},
		{"dockerLibraryRegistry", host + "/library"},
		{"cloudProviderGcpRegistry", host + "/cloud-provider-gcp"},
	} {
		fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
	}
	return b.String()
}
