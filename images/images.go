// Package images describes the OCI images a u7s node runs: which binaries of the local build
// (`make components`, --bin-dir) and which host files each one carries, where they go, and how
// the image starts. internal/imagebuild assembles and pushes them; this package is only data,
// so that the layout the consumers (kubeadm's static pods, the kube-proxy DaemonSet, flannel's
// manifest, cri-o's pause_command) depend on is written down in one place.
package images

import (
	"fmt"
	"sort"
	"strings"

	"github.com/u7s/u7s/internal/version"
)

// Binary is a file of --bin-dir copied into the image as an executable.
type Binary struct {
	// Name is the file name in --bin-dir.
	Name string
	// Path is its absolute path in the image.
	Path string
	// Optional binaries are skipped when --bin-dir lacks them.
	Optional bool
	// Mode is its permission bits in Unix notation (04755: set-uid); 0 means 0755.
	Mode uint32
}

// HostFile is a file of the build host copied into the image, together with the shared
// libraries it needs when it is a dynamic ELF file.
type HostFile struct {
	// Src is the host path, or a glob whose matches all go into the directory Path.
	Src string
	// Path is the absolute path in the image (the directory, when Src is a glob).
	Path string
	// Package is the Debian package that provides Src, named in the error when it is missing.
	Package string
	// Optional files are skipped when the host lacks them.
	Optional bool
}

// IsGlob reports whether Src names a set of files.
func (f HostFile) IsGlob() bool { return strings.ContainsAny(f.Src, "*?[") }

// Link is a symbolic link in the image.
type Link struct {
	Path   string
	Target string
}

// Busybox adds a static busybox and links to its applets. An applet is not linked where the
// image has a real command of that name on its PATH: upstream's images run their tools
// (OpenBSD nc, iproute2's ip), not busybox's.
type Busybox struct {
	// Applets to link next to BusyboxPath; nil links every applet of `busybox --list`.
	Applets []string
	// Binary names a busybox in --bin-dir (`make components`) to carry instead of the host's:
	// the test images carry the busybox of upstream's test images.
	Binary string
}

// BusyboxSrc is the host busybox the images carry: Debian's busybox-static.
const BusyboxSrc = "/bin/busybox"

// BusyboxPackage provides BusyboxSrc.
const BusyboxPackage = "busybox-static"

// BusyboxPath is where busybox and its applet links go in an image.
const BusyboxPath = "/bin/busybox"

// DataFile is a file of --bin-dir copied into the image as data (not checked as an executable).
type DataFile struct {
	Name string
	Path string
	Mode uint32
}

// Account is a user of the image's /etc/passwd, with its group, and more groups it belongs to.
type Account struct {
	Name     string
	UID, GID int
	Groups   []Group
}

// Group is a group of the image's /etc/group.
type Group struct {
	Name string
	GID  int
}

// Config is the part of the OCI image config that says how a container starts.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	// User is "uid[:gid]"; empty means root.
	User       string
	WorkingDir string
}

// Spec is one image.
type Spec struct {
	// Name is the image's short name, as given to --only.
	Name string
	// Repository is the path of the image under the registry prefix (under the registry host
	// for test images).
	Repository string
	Tag        string
	// Test images (busybox, agnhost) live where the e2e suite expects them: under the
	// registry host, not under the platform path of --registry.
	Test      bool
	Binaries  []Binary
	DataFiles []DataFile
	HostFiles []HostFile
	Links     []Link
	Dirs      []Dir
	// Files are generated files of this image only.
	Files    []File
	Accounts []Account
	Busybox  *Busybox
	Config   Config
}

// Reference is the image's full name under registry, e.g. "registry.local/k8s-p10/pause:3.10.1"
// or, for a test image, "registry.local/e2e-test-images/busybox:1.37.0-1".
func (s Spec) Reference(registry string) string {
	prefix := strings.TrimSuffix(registry, "/")
	if s.Test {
		prefix = RegistryHost(registry)
	}
	return prefix + "/" + s.Repository + ":" + s.Tag
}

// TestRepository is where upstream's e2e tests look for their images (KUBE_TEST_REPO_LIST's
// promoterE2eRegistry), under the registry host.
const TestRepository = "e2e-test-images"

// RegistryHost is the host[:port] part of a registry prefix such as "registry.local/k8s-p10", or
// of an image reference: the one parser of it.
func RegistryHost(registry string) string {
	host, _, _ := strings.Cut(strings.TrimSuffix(registry, "/"), "/")
	return host
}

// File is a generated file every image carries.
type File struct {
	Path    string
	Content string
	Mode    uint32
}

// Dir is a directory every image carries.
type Dir struct {
	Path string
	Mode uint32
}

// Base is what every image has besides its own files: the directories programs and runtimes
// expect to exist, and account files so that "root" and "nobody" resolve.
var Base = struct {
	Dirs  []Dir
	Files []File
	Links []Link
}{
	Dirs: []Dir{
		{Path: "/etc", Mode: 0o755},
		{Path: "/root", Mode: 0o700},
		{Path: "/run", Mode: 0o755},
		{Path: "/tmp", Mode: 0o1777},
		{Path: "/var", Mode: 0o755},
	},
	Files: []File{
		{Path: "/etc/passwd", Mode: 0o644, Content: "root:x:0:0:root:/root:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"},
		{Path: "/etc/group", Mode: 0o644, Content: "root:x:0:\nnobody:x:65534:\n"},
	},
	// Service account tokens are mounted below /var/run: keep it the /run of the image.
	Links: []Link{{Path: "/var/run", Target: "../run"}},
}

// Path is the PATH of every image; kubeadm's static pods run their commands by bare name.
const Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// XtablesDir is where iptables looks for its extension modules (Debian's XTABLES_LIBDIR).
const XtablesDir = "/usr/lib/x86_64-linux-gnu/xtables"

// xtablesMulti is iptables-nft's multi-call binary; every iptables command is a link to it.
const xtablesMulti = "/usr/sbin/xtables-nft-multi"

// IptablesFiles is the iptables userland, nft variant, that kube-proxy and flannel execute.
// The shared libraries and the dynamic loader are added by following the ELF files' needs.
var IptablesFiles = []HostFile{
	{Src: xtablesMulti, Path: xtablesMulti, Package: "iptables"},
	{Src: XtablesDir + "/*.so", Path: XtablesDir, Package: "iptables"},
	// iptables resolves protocol and service names (-p, --dport http) through these.
	{Src: "/etc/protocols", Path: "/etc/protocols", Package: "netbase", Optional: true},
	{Src: "/etc/services", Path: "/etc/services", Package: "netbase", Optional: true},
	// kube-proxy clears stale UDP conntrack entries with it.
	{Src: "/usr/sbin/conntrack", Path: "/usr/sbin/conntrack", Package: "conntrack", Optional: true},
}

// IptablesLinks are the commands of the iptables userland, all served by xtables-nft-multi.
var IptablesLinks = func() []Link {
	var links []Link
	for _, family := range []string{"iptables", "ip6tables"} {
		for _, variant := range []string{"", "-nft"} {
			for _, suffix := range []string{"", "-save", "-restore"} {
				links = append(links, Link{Path: "/usr/sbin/" + family + variant + suffix, Target: "xtables-nft-multi"})
			}
		}
	}
	return links
}()

func kubeImage(name string) Spec {
	bin := "/usr/local/bin/" + name
	return Spec{
		Name:       name,
		Repository: name,
		// kubeadm's tag of a version (KubernetesVersionToImageTag).
		Tag:      strings.ReplaceAll(version.Pinned.Kubernetes, "+", "_"),
		Binaries: []Binary{{Name: name, Path: bin}},
		Config:   Config{Entrypoint: []string{bin}, Env: []string{"PATH=" + Path}},
	}
}

// All returns every image u7s builds, node images first, then test images.
func All() []Spec {
	kubeProxy := kubeImage("kube-proxy")
	kubeProxy.HostFiles = append(append([]HostFile{}, IptablesFiles...),
		// Only the nftables proxy mode runs nft; the iptables mode merely cleans up with it.
		HostFile{Src: "/usr/sbin/nft", Path: "/usr/sbin/nft", Package: "nftables", Optional: true})
	kubeProxy.Links = IptablesLinks

	return []Spec{
		kubeImage("kube-apiserver"),
		kubeImage("kube-controller-manager"),
		kubeImage("kube-scheduler"),
		kubeProxy,
		{
			Name:       "etcd",
			Repository: "etcd",
			Tag:        version.Pinned.EtcdImageTag,
			Binaries: []Binary{
				{Name: "etcd", Path: "/usr/local/bin/etcd"},
				{Name: "etcdctl", Path: "/usr/local/bin/etcdctl", Optional: true},
				{Name: "etcdutl", Path: "/usr/local/bin/etcdutl", Optional: true},
			},
			Config: Config{Entrypoint: []string{"/usr/local/bin/etcd"}, Env: []string{"PATH=" + Path}},
		},
		{
			Name:       "coredns",
			Repository: "coredns",
			Tag:        version.Pinned.CoreDNS,
			Binaries:   []Binary{{Name: "coredns", Path: "/coredns"}},
			// Runs as the namespace's root: kubeadm's Deployment grants only NET_BIND_SERVICE,
			// which a non-root user gets only from a file capability (upstream setcap's the
			// binary), and file capabilities do not survive a rootless unpack reliably.
			Config: Config{Entrypoint: []string{"/coredns"}, Env: []string{"PATH=" + Path}},
		},
		{
			Name:       "pause",
			Repository: "pause",
			Tag:        version.Pinned.PauseImageTag,
			Binaries:   []Binary{{Name: "pause", Path: "/pause"}},
			Config:     Config{Entrypoint: []string{"/pause"}, User: "65535:65535"},
		},
		{
			Name:       "flannel",
			Repository: "flannel",
			Tag:        version.Pinned.Flannel,
			Binaries:   []Binary{{Name: "flanneld", Path: "/opt/bin/flanneld"}},
			HostFiles:  IptablesFiles,
			Links:      IptablesLinks,
			// The install-cni init container of flannel's manifest runs `cp`.
			Busybox: &Busybox{Applets: []string{"cp"}},
			Config:  Config{Entrypoint: []string{"/opt/bin/flanneld"}, Env: []string{"PATH=" + Path}},
		},
		{
			// NetworkPolicy (cmd/u7s-netpol): kube-router's controller runs iptables-nft and
			// ipset in the node's network namespace.
			Name:       "u7s-netpol",
			Repository: "u7s-netpol",
			Tag:        version.Pinned.NetpolImageTag,
			Binaries:   []Binary{{Name: "u7s-netpol", Path: "/usr/local/bin/u7s-netpol"}},
			HostFiles: append(append([]HostFile{}, IptablesFiles...),
				HostFile{Src: "/usr/sbin/ipset", Path: "/usr/sbin/ipset", Package: "ipset"}),
			Links:  IptablesLinks,
			Config: Config{Entrypoint: []string{"/usr/local/bin/u7s-netpol"}, Env: []string{"PATH=" + Path}},
		},
		{
			// The default StorageClass's provisioner (cmd/u7s-local-path): makes and removes
			// the volumes' directories of its node.
			Name:       "u7s-local-path",
			Repository: "u7s-local-path",
			Tag:        version.Pinned.LocalPathImageTag,
			Binaries:   []Binary{{Name: "u7s-local-path", Path: "/usr/local/bin/u7s-local-path"}},
			Config:     Config{Entrypoint: []string{"/usr/local/bin/u7s-local-path"}, Env: []string{"PATH=" + Path}},
		},
		{
			// The Metrics API; its Deployment runs it as user 1000 (Pod Security restricted).
			Name:       "metrics-server",
			Repository: "metrics-server",
			Tag:        version.Pinned.MetricsServer,
			Binaries:   []Binary{{Name: "metrics-server", Path: "/metrics-server"}},
			Config:     Config{Entrypoint: []string{"/metrics-server"}, Env: []string{"PATH=" + Path}, User: "65534:65534"},
		},
		busyboxImage(),
		agnhost(),
		agnhostPrev(),
		glibcDNSTesting(),
		pageImage("kitten", version.Pinned.KittenTag),
		pageImage("nautilus", version.Pinned.NautilusTag),
		nginx(),
		nonewprivs(),
		nonroot(),
		sampleAPIServer(),
	}
}

// busyboxImage is upstream's e2e-test-images/busybox: the busybox image of its version, sh and
// every other applet included.
func busyboxImage() Spec {
	s := testSpec("busybox", version.Pinned.BusyboxTag)
	s.Config = Config{Cmd: []string{"sh"}, Env: []string{"PATH=" + Path}}
	return s
}

// nonewprivs is upstream's e2e-test-images/nonewprivs: nnp, set-uid root, on Alpine; here on busybox.
func nonewprivs() Spec {
	s := testSpec("nonewprivs", version.Pinned.NonewprivsTag)
	s.Binaries = []Binary{{Name: "nnp", Path: "/usr/local/bin/nnp", Mode: 0o4755}}
	s.Config = Config{Cmd: []string{"nnp"}, Env: []string{"PATH=" + Path}}
	return s
}

// nonroot is upstream's e2e-test-images/nonroot: a Debian base whose default user is 1234; here
// busybox as that user.
func nonroot() Spec {
	s := testSpec("nonroot", version.Pinned.NonrootTag)
	s.Config = Config{Cmd: []string{"sh"}, Env: []string{"PATH=" + Path}, User: "1234"}
	return s
}

// sampleAPIServer is upstream's e2e-test-images/sample-apiserver: k8s.io/sample-apiserver at /,
// on Alpine. Built from the staging module of the pinned Kubernetes (upstream's tag is an older
// release of it), on busybox.
func sampleAPIServer() Spec {
	s := testSpec("sample-apiserver", version.Pinned.SampleAPIServerTag)
	s.Binaries = []Binary{{Name: "sample-apiserver", Path: "/sample-apiserver"}}
	s.Config = Config{Entrypoint: []string{"/sample-apiserver"}, Env: []string{"PATH=" + Path}}
	return s
}

// osRelease describes a test image whose upstream is an Alpine Linux image (agnhost and the
// images made from it) for what it is: Debian's tools in the layout of that image. Upstream's
// image-volume spec reads the /etc/os-release of kitten and looks for "Alpine Linux".
func osRelease(name, tag string) File {
	return File{Path: "/etc/os-release", Mode: 0o644, Content: "NAME=\"u7s test image\"\n" +
		"ID=u7s-test-image\n" +
		"VERSION_ID=" + tag + "\n" +
		"PRETTY_NAME=\"u7s e2e-test-images/" + name + ":" + tag + ", Debian's tools in the layout of upstream's Alpine Linux image\"\n"}
}

// agnhostPrev is the image upstream's specs roll from and to beside agnhost (AgnhostPrev):
// agnhost at an older tag. That release's source is not on the module proxy (it belongs to an
// older Kubernetes), so the tag carries this tree's agnhost; the specs only need a second image
// that runs agnhost's commands.
func agnhostPrev() Spec {
	s := agnhost()
	s.Name = "agnhost-prev"
	s.Tag = version.Pinned.AgnhostPrevTag
	s.Files = withOSRelease(s.Files, "agnhost", s.Tag)
	return s
}

func withOSRelease(files []File, name, tag string) []File {
	out := []File{osRelease(name, tag)}
	for _, f := range files {
		if f.Path != "/etc/os-release" {
			out = append(out, f)
		}
	}
	return out
}

// pageImage is upstream's e2e-test-images/kitten or nautilus (test/images/NAME): agnhost serving
// NAME.jpg and a data.json that names it, from / with its test-webserver. `make components`
// copies both files from the pinned Kubernetes into --bin-dir (ImagePage).
func pageImage(name, tag string) Spec {
	s := agnhost()
	s.Name = name
	s.Repository = TestRepository + "/" + name
	s.Tag = tag
	s.Files = withOSRelease(s.Files, name, tag)
	s.DataFiles = append(append([]DataFile{}, s.DataFiles...),
		DataFile{Name: ImagePage(name, name+".jpg"), Path: "/" + name + ".jpg", Mode: 0o644},
		DataFile{Name: ImagePage(name, "data.json"), Path: "/data.json", Mode: 0o644})
	s.Config.Cmd = []string{"test-webserver"}
	return s
}

// ImagePage is the name in --bin-dir of file of the kitten or nautilus image: kitten.jpg and
// kitten-data.json.
func ImagePage(image, file string) string {
	if file == image+".jpg" {
		return file
	}
	return image + "-" + file
}

// NginxUser is the account nginx's workers run as, as in upstream's nginx image.
var NginxUser = Account{Name: "nginx", UID: 101, GID: 101}

// nginxConf is upstream's nginx image's configuration (nginx.conf and conf.d/default.conf of the
// official image, in one file): a server on port 80 for /usr/share/nginx/html, logs to the
// container's output.
const nginxConf = `user nginx;
worker_processes auto;
error_log /dev/stderr notice;
pid /run/nginx.pid;

events {
    worker_connections 1024;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;

    server {
        listen 80;
        server_name localhost;
        location / {
            root /usr/share/nginx/html;
            index index.html index.htm;
        }
    }
}
`

// nginx is upstream's e2e-test-images/nginx: the official nginx image on Alpine, nginx at the
// tag's version. Here Debian's nginx of the build host's release (`make components`), with the
// same configuration, user and command; the specs use it as a web server on port 80.
func nginx() Spec {
	s := testSpec("nginx", version.Pinned.NginxTag)
	s.Binaries = []Binary{{Name: "nginx", Path: "/usr/sbin/nginx"}}
	s.DataFiles = []DataFile{
		{Name: "nginx-mime.types", Path: "/etc/nginx/mime.types", Mode: 0o644},
		{Name: "nginx-index.html", Path: "/usr/share/nginx/html/index.html", Mode: 0o644},
	}
	// Debian's nginx opens its built-in error log and keeps its temporary files here.
	s.Dirs = []Dir{{Path: "/var/log/nginx", Mode: 0o755}, {Path: "/var/lib/nginx", Mode: 0o755}}
	s.Files = []File{{Path: "/etc/nginx/nginx.conf", Mode: 0o644, Content: nginxConf}}
	s.Accounts = []Account{NginxUser}
	s.Config = Config{Cmd: []string{"nginx", "-g", "daemon off;"}, Env: []string{"PATH=" + Path}}
	return s
}

// dnsTools are the DNS clients of upstream's test images (bind's dig, host and nslookup) and
// glibc's getent, which the DNS tests' probes run.
func dnsTools() []HostFile {
	return []HostFile{
		{Src: "/usr/bin/dig", Path: "/usr/bin/dig", Package: "bind9-dnsutils"},
		{Src: "/usr/bin/nslookup", Path: "/usr/bin/nslookup", Package: "bind9-dnsutils"},
		{Src: "/usr/bin/host", Path: "/usr/bin/host", Package: "bind9-host"},
		{Src: "/usr/bin/getent", Path: "/usr/bin/getent", Package: "libc-bin"},
	}
}

// bash is the bash that upstream's agnhost and glibc-dns-testing carry. glibc-dns-testing is a
// Debian image upstream, whose sh is dash; here its sh is bash (bashAsSh).
var (
	bash     = HostFile{Src: "/bin/bash", Path: "/bin/bash", Package: "bash"}
	bashAsSh = Link{Path: "/bin/sh", Target: "bash"}
)

// glibcDNSTesting is upstream's e2e-test-images/glibc-dns-testing (test/images/glibc-dns-testing):
// Debian bookworm with dnsutils and CoreDNS, the glibc resolver's side of the DNS tests.
// Here: the same Debian tools, on busybox's applets for the commands of a Debian base.
func glibcDNSTesting() Spec {
	s := testSpec("glibc-dns-testing", version.Pinned.GlibcDNSTestingTag)
	s.Binaries = []Binary{{Name: "coredns", Path: "/coredns"}}
	s.HostFiles = append(dnsTools(), bash)
	s.Links = []Link{bashAsSh}
	s.Files = []File{{Path: "/etc/nsswitch.conf", Mode: 0o644, Content: "hosts: files dns\n"}}
	s.Config = Config{Cmd: []string{"bash"}, Env: []string{"PATH=" + Path}}
	return s
}

// testSpec is the part every test image shares: its place under e2e-test-images, as upstream's
// e2e suite names it, and the busybox of upstream's test images for the commands it lacks.
func testSpec(name, tag string) Spec {
	return Spec{Name: name, Repository: TestRepository + "/" + name, Tag: tag, Test: true, Busybox: &Busybox{Binary: TestBusybox}}
}

// TestBusybox is the busybox of the test images in --bin-dir: the version of upstream's
// test images (BUSYBOX_VERSION), which `make components` builds from busybox's release as
// busybox's own image is built. Its sh passes on environment variables that are not shell names
// (`1-data-1`, which the ConfigMap and Secrets specs look for) and finds commands on PATH, as
// Alpine's does in upstream's agnhost; Debian's busybox-static does neither.
const TestBusybox = "busybox"

// AgnhostUser and AgnhostGroup are the account and group upstream's agnhost Dockerfile adds
// (adduser -u 1000 -D user-defined-in-image; addgroup -g 50000 group-defined-in-image); the
// e2e tests of image-defined users run as them.
var (
	AgnhostGroup = Group{Name: "group-defined-in-image", GID: 50000}
	AgnhostUser  = Account{Name: "user-defined-in-image", UID: 1000, GID: 1000, Groups: []Group{AgnhostGroup}}
)

// agnhost is upstream's e2e-test-images/agnhost (test/images/agnhost/Dockerfile): the agnhost
// binary on busybox, with the tools its Dockerfile installs from Alpine (bind-tools, curl,
// netcat-openbsd, iproute2, iperf, bash), taken from their Debian packages here, CoreDNS,
// porter's TLS pair, the /uploads of netexec, the agnhost-2 link of the entrypoint tests and
// the image-defined user. Left out: /var/registry, a copy of images from the internet that
// only the tests of a fake registry use.
func agnhost() Spec {
	tool := func(src, dst, pkg string) HostFile { return HostFile{Src: src, Path: dst, Package: pkg} }
	return Spec{
		Name:       "agnhost",
		Repository: TestRepository + "/agnhost",
		Tag:        version.Pinned.AgnhostTag,
		Test:       true,
		Binaries: []Binary{
			{Name: "agnhost", Path: "/agnhost"},
			// Upstream's Dockerfile unpacks a CoreDNS release at /; DNS tests run it.
			{Name: "coredns", Path: "/coredns"},
		},
		// porter serves TLS from its working directory with these.
		DataFiles: []DataFile{
			{Name: AgnhostPorterCert, Path: "/localhost.crt", Mode: 0o644},
			{Name: AgnhostPorterKey, Path: "/localhost.key", Mode: 0o644},
		},
		HostFiles: append(append(dnsTools(), bash),
			tool("/usr/bin/curl", "/usr/bin/curl", "curl"),
			tool("/bin/nc.openbsd", "/usr/bin/nc", "netcat-openbsd"),
			tool("/bin/ip", "/sbin/ip", "iproute2"),
			tool("/bin/ss", "/usr/sbin/ss", "iproute2"),
			tool("/usr/bin/iperf", "/usr/bin/iperf", "iperf"),
			// make bench measures pod-to-pod throughput with iperf3.
			tool("/usr/bin/iperf3", "/usr/bin/iperf3", "iperf3"),
			HostFile{Src: "/etc/ssl/certs/ca-certificates.crt", Path: "/etc/ssl/certs/ca-certificates.crt", Package: "ca-certificates", Optional: true},
			HostFile{Src: "/etc/services", Path: "/etc/services", Package: "netbase", Optional: true},
			HostFile{Src: "/etc/protocols", Path: "/etc/protocols", Package: "netbase", Optional: true},
		),
		Links: []Link{
			{Path: "/agnhost-2", Target: "agnhost"},
			{Path: "/usr/local/bin/iperf", Target: "/usr/bin/iperf"},
		},
		Dirs: []Dir{{Path: "/uploads", Mode: 0o755}},
		// glibc's tools resolve names as musl does in upstream's image: /etc/hosts, then DNS.
		Files: []File{
			{Path: "/etc/nsswitch.conf", Mode: 0o644, Content: "hosts: files dns\n"},
			osRelease("agnhost", version.Pinned.AgnhostTag),
		},
		Accounts: []Account{AgnhostUser},
		Busybox:  &Busybox{Binary: TestBusybox},
		Config:   Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}, Env: []string{"PATH=" + Path}},
	}
}

// AgnhostPorterCert and AgnhostPorterKey are porter's TLS pair in --bin-dir, copied there
// from the pinned Kubernetes' test/images/agnhost/porter by `make components`.
const (
	AgnhostPorterCert = "agnhost-localhost.crt"
	AgnhostPorterKey  = "agnhost-localhost.key"
)

// Lookup returns the image named name.
func Lookup(name string) (Spec, bool) {
	for _, s := range All() {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}

// Names lists the short names of all images.
func Names() []string {
	var names []string
	for _, s := range All() {
		names = append(names, s.Name)
	}
	return names
}

// Select returns the images named in only (all node images when only is empty), plus the test
// images when testImages is set, in the order of All.
func Select(only []string, testImages bool) ([]Spec, error) {
	want := map[string]bool{}
	for _, n := range only {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, ok := Lookup(n); !ok {
			known := Names()
			sort.Strings(known)
			return nil, fmt.Errorf("unknown image %q: known images are %s", n, strings.Join(known, ", "))
		}
		want[n] = true
	}
	var out []Spec
	for _, s := range All() {
		switch {
		case want[s.Name]:
		case len(want) == 0 && !s.Test:
		case testImages && s.Test:
		default:
			continue
		}
		out = append(out, s)
	}
	return out, nil
}
