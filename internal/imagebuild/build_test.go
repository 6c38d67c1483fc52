package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/u7s/u7s/images"
)

// testBusybox is the test images' busybox that `make components` built, if it did: the chroot
// tests of upstream's busybox behaviour need it, and the host's busybox-static stands in for the rest.
const testBusybox = "../../_output/bin/" + images.TestBusybox

// haveTestBusybox reports whether testBusybox was built.
func haveTestBusybox() bool { _, err := os.Stat(testBusybox); return err == nil }

// fakeBinDir links every binary any image takes to the test executable (an x86-64 ELF file),
// the test images' busybox to testBusybox or else the host's (real ones, for the chroot tests),
// and writes their data files.
func fakeBinDir(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	busybox := images.BusyboxSrc
	if haveTestBusybox() {
		busybox, _ = filepath.Abs(testBusybox)
	}
	dir := t.TempDir()
	for _, s := range images.All() {
		for _, b := range s.Binaries {
			p := filepath.Join(dir, b.Name)
			if _, err := os.Lstat(p); err == nil {
				continue
			}
			if err := os.Symlink(self, p); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range s.DataFiles {
			if err := os.WriteFile(filepath.Join(dir, d.Name), []byte(d.Name), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if bb := s.Busybox; bb != nil && bb.Binary != "" {
			p := filepath.Join(dir, bb.Binary)
			if _, err := os.Lstat(p); err != nil {
				if err := os.Symlink(busybox, p); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return dir
}

// needHost skips tests that assemble real images when the host lacks their Debian packages.
func needHost(t *testing.T) {
	t.Helper()
	for _, p := range []string{"/usr/sbin/xtables-nft-multi", images.XtablesDir, "/bin/busybox"} {
		hostFile(t, p)
	}
	agnhost, _ := images.Lookup("agnhost")
	for _, f := range agnhost.HostFiles {
		if !f.Optional {
			hostFile(t, f.Src)
		}
	}
}

func TestSpecTrees(t *testing.T) {
	needHost(t)
	b := &Builder{BinDir: fakeBinDir(t)}
	want := map[string][]string{
		"kube-apiserver": {"/usr/local/bin/kube-apiserver", "/etc/passwd", "/tmp"},
		"kube-proxy": {"/usr/local/bin/kube-proxy", "/usr/sbin/xtables-nft-multi", "/usr/sbin/iptables",
			"/usr/sbin/iptables-restore", "/usr/sbin/ip6tables-restore", "/usr/sbin/iptables-save",
			images.XtablesDir + "/libxt_MASQUERADE.so", images.XtablesDir + "/libxt_comment.so", loader},
		"etcd":    {"/usr/local/bin/etcd", "/usr/local/bin/etcdctl"},
		"coredns": {"/coredns"},
		"pause":   {"/pause"},
		"flannel": {"/opt/bin/flanneld", "/bin/busybox", "/bin/cp", "/usr/sbin/iptables", loader},
		"busybox": {"/bin/busybox", "/bin/sh", "/bin/sleep", "/bin/nslookup", "/bin/wget", "/bin/dd", "/bin/id"},
		"agnhost": {"/agnhost", "/agnhost-2", "/coredns", "/bin/sh", "/bin/bash", "/usr/bin/dig", "/usr/bin/host",
			"/usr/bin/curl", "/usr/bin/nc", "/sbin/ip", "/usr/sbin/ss", "/usr/bin/iperf", "/usr/local/bin/iperf",
			"/usr/bin/iperf3", "/uploads", "/localhost.crt", "/localhost.key", "/etc/nsswitch.conf", loader},
	}
	want["glibc-dns-testing"] = []string{"/coredns", "/usr/bin/dig", "/usr/bin/getent", "/bin/bash", "/bin/sh", "/bin/seq", "/bin/sleep", loader}
	want["agnhost-prev"] = want["agnhost"]
	want["kitten"] = append([]string{"/kitten.jpg", "/data.json", "/etc/os-release"}, want["agnhost"]...)
	want["nautilus"] = append([]string{"/nautilus.jpg", "/data.json", "/etc/os-release"}, want["agnhost"]...)
	want["nginx"] = []string{"/usr/sbin/nginx", "/etc/nginx/nginx.conf", "/etc/nginx/mime.types",
		"/usr/share/nginx/html/index.html", "/var/log/nginx", "/var/lib/nginx", "/bin/sh"}
	want["nonewprivs"] = []string{"/usr/local/bin/nnp", "/bin/sh"}
	want["nonroot"] = []string{"/bin/sh", "/bin/id"}
	want["sample-apiserver"] = []string{"/sample-apiserver"}
	// Where a real command is on PATH, busybox's applet of that name is not linked.
	notWant := map[string][]string{
		"agnhost": {"/bin/nc", "/bin/ip", "/bin/nslookup"},
		"flannel": {"/bin/sh"}, // only cp
	}
	for _, s := range images.All() {
		t.Run(s.Name, func(t *testing.T) {
			tr, err := b.Tree(s)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range want[s.Name] {
				if !tr.Has(p) {
					t.Errorf("image %s lacks %s", s.Name, p)
				}
			}
			for _, p := range notWant[s.Name] {
				if tr.Has(p) {
					t.Errorf("image %s has %s, want it left out", s.Name, p)
				}
			}
		})
	}
}

// TestBinaryMode: a binary keeps the mode its spec gives (nonewprivs' set-uid nnp), others are 0755.
func TestBinaryMode(t *testing.T) {
	b := &Builder{BinDir: fakeBinDir(t)}
	for image, want := range map[string]map[string]fs.FileMode{
		"nonewprivs": {"/usr/local/bin/nnp": 0o755 | fs.ModeSetuid},
		"pause":      {"/pause": 0o755},
	} {
		s, _ := images.Lookup(image)
		tr, err := b.Tree(s)
		if err != nil {
			t.Fatal(err)
		}
		for p, mode := range want {
			if got := tr.entries[p].mode; got != mode {
				t.Errorf("%s: %s has mode %v, want %v", image, p, got, mode)
			}
		}
	}
}

func TestMissing(t *testing.T) {
	tests := []struct {
		name    string
		only    []string
		bins    []string
		root    string
		wantErr []string
	}{
		{name: "nothing built", only: []string{"pause", "etcd"}, root: "/",
			wantErr: []string{"/etcd, ", "/pause: build them with `make components`"}},
		{name: "optional binaries may be missing", only: []string{"etcd"}, bins: []string{"etcd"}, root: "/"},
		{name: "host packages named", only: []string{"kube-proxy", "flannel"}, bins: []string{"kube-proxy", "flanneld"}, root: "empty",
			wantErr: []string{"/usr/sbin/xtables-nft-multi (Debian package iptables)", "/bin/busybox (Debian package busybox-static)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, b := range tt.bins {
				if err := os.WriteFile(filepath.Join(dir, b), nil, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			root := tt.root
			if root == "empty" {
				root = t.TempDir()
			}
			specs, err := images.Select(tt.only, false)
			if err != nil {
				t.Fatal(err)
			}
			err = (&Builder{BinDir: dir, HostRoot: root}).Check(specs)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var me *MissingError
			if !errors.As(err, &me) {
				t.Fatalf("got %v, want a MissingError", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// extract unpacks a layer the way a runtime would, for chroot tests.
func extract(t *testing.T, tr *Tree) string {
	t.Helper()
	var buf bytes.Buffer
	if err := tr.WriteTar(&buf); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	r := tar.NewReader(&buf)
	for {
		h, err := r.Next()
		if err == io.EOF {
			return root
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.Mkdir(p, os.FileMode(h.Mode).Perm())
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, os.FileMode(h.Mode).Perm()); err == nil {
				_, err = io.Copy(f, r)
				f.Close()
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// mountProc gives an extracted root the /proc a runtime gives a container: busybox's shell
// runs its applets through /proc/self/exe, and only then prefers them to the image's tools.
func mountProc(t *testing.T, root string) {
	t.Helper()
	p := filepath.Join(root, "proc")
	if err := os.MkdirAll(p, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("/proc", p, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		t.Fatalf("bind-mounting /proc: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(p, syscall.MNT_DETACH) })
}

// inChroot runs argv in root as its root directory.
func inChroot(t *testing.T, root string, argv ...string) string {
	t.Helper()
	prog := argv[0]
	if !strings.Contains(prog, "/") { // look it up in the image, not on the host
		for _, dir := range filepath.SplitList(images.Path) {
			if _, err := os.Lstat(filepath.Join(root, dir, prog)); err == nil {
				prog = filepath.Join(dir, prog)
				break
			}
		}
	}
	cmd := exec.Command(prog, argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	// And a variable whose name is not a shell name, as upstream's Secrets specs set.
	cmd.Env = []string{"PATH=" + images.Path, "1-data-1=value-1"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s %v: %v\n%s", root, argv, err, out)
	}
	return string(out)
}

// TestChroot runs programs of assembled images in their extracted root, without the host's
// /etc/ld.so.cache: proof that loader, libraries and xtables modules are where they must be.
func TestChroot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	needHost(t)
	b := &Builder{BinDir: fakeBinDir(t)}
	type chrootTest struct {
		image string
		argv  []string
		want  string
	}
	tests := []chrootTest{
		{"kube-proxy", []string{"iptables", "--version"}, "(nf_tables)"},
		{"kube-proxy", []string{"ip6tables-restore", "--version"}, "(nf_tables)"},
		{"kube-proxy", []string{"iptables-save", "--version"}, "(nf_tables)"},
		{"flannel", []string{"/usr/sbin/iptables", "--version"}, "(nf_tables)"},
		{"flannel", []string{"cp", "/etc/passwd", "/tmp/copied"}, ""},
		{"busybox", []string{"sh", "-c", "echo ok"}, "ok\n"},
		{"busybox", []string{"id", "-un"}, "root\n"},
		// The tools of upstream's agnhost, as its e2e tests run them.
		{"agnhost", []string{"dig", "-v"}, "DiG 9"},
		{"agnhost", []string{"host", "-V"}, "host 9"},
		{"agnhost", []string{"nslookup", "-version"}, "nslookup 9"},
		{"agnhost", []string{"curl", "--version"}, "libcurl"},
		{"agnhost", []string{"nc", "-h"}, "OpenBSD netcat"},
		{"agnhost", []string{"ip", "-V"}, "iproute2"},
		{"agnhost", []string{"ss", "-V"}, "iproute2"},
		{"agnhost", []string{"sh", "-c", "iperf -v 2>&1; true"}, "iperf version 2"}, // exits 1
		{"agnhost", []string{"iperf3", "--version"}, "iperf 3"},
		{"agnhost", []string{"bash", "-c", "echo $BASH_VERSION"}, "5."},
		{"agnhost", []string{"sh", "-c", "id user-defined-in-image"}, "uid=1000(user-defined-in-image) gid=1000(user-defined-in-image) groups=1000(user-defined-in-image),50000(group-defined-in-image)"},
		{"agnhost", []string{"sh", "-c", "cat /localhost.crt; test -d /uploads && echo uploads"}, "uploads"},
		{"agnhost", []string{"sh", "-c", "getent hosts localhost || echo none"}, ""},
		// The probe of upstream's DNS tests, in short.
		{"glibc-dns-testing", []string{"sh", "-c", "for i in $(seq 1 2); do dig -v 2>&1; done; nslookup -version; getent passwd root"}, "DiG 9"},
		{"glibc-dns-testing", []string{"sh", "-c", "nslookup -version"}, "nslookup 9"},
		{"glibc-dns-testing", []string{"getent", "passwd", "root"}, "root:x:0:0"},
	}
	// These need the sh of upstream's busybox, which only testBusybox is.
	upstreamSh := []chrootTest{
		// Upstream's Secrets specs: sh passes on variables that are not shell names.
		{"busybox", []string{"sh", "-c", "env"}, "1-data-1=value-1"},
		// Upstream's read-only root spec wants busybox sh's own words ("can't create").
		{"busybox", []string{"sh", "-c", "echo x >/no/file; true"}, "/bin/sh: can't create /no/file:"},
		// As upstream's tests run it: through sh, which must not take busybox's applet.
		{"agnhost", []string{"sh", "-c", "nc -h 2>&1"}, "OpenBSD netcat"},
	}
	if haveTestBusybox() {
		tests = append(tests, upstreamSh...)
	} else {
		t.Logf("skipping %d tests of upstream's busybox sh: they need the test images' busybox in %s (make components)", len(upstreamSh), testBusybox)
	}
	roots := map[string]string{} // extracted into the parent test's temp dir, shared by subtests
	parent := t
	for _, tt := range tests {
		t.Run(tt.image+" "+strings.Join(tt.argv, " "), func(t *testing.T) {
			root, ok := roots[tt.image]
			if !ok {
				s, _ := images.Lookup(tt.image)
				tr, err := b.Tree(s)
				if err != nil {
					t.Fatal(err)
				}
				root = extract(parent, tr)
				mountProc(parent, root)
				roots[tt.image] = root
			}
			if got := inChroot(t, root, tt.argv...); !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := os.Stat("/usr/sbin/conntrack"); err == nil {
		s, _ := images.Lookup("kube-proxy")
		tr, err := b.Tree(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := inChroot(t, extract(t, tr), "conntrack", "--version"); !strings.Contains(got, "conntrack") {
			t.Errorf("conntrack --version: %q", got)
		}
	}
}

func TestBuildPushOCI(t *testing.T) {
	needHost(t)
	b := &Builder{BinDir: fakeBinDir(t)}
	s, _ := images.Lookup("pause")
	img1, err := b.Build(s, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer img1.Close()
	img2, err := b.Build(s, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer img2.Close()
	d1, err := img1.Image.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := img2.Image.Digest(); d1 != d2 {
		t.Errorf("two builds of the same inputs differ: %s, %s", d1, d2)
	}
	cf, err := img1.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || cf.RootFS.Type != "layers" || len(cf.RootFS.DiffIDs) != 1 ||
		cf.Config.User != "65535:65535" || strings.Join(cf.Config.Entrypoint, " ") != "/pause" {
		j, _ := json.Marshal(cf)
		t.Errorf("config %s", j)
	}
	if mt, _ := img1.Image.MediaType(); mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %s", mt)
	}

	t.Run("OCI layout, written twice, holds the image once", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "oci")
		ref := s.Reference("registry.local/k8s-p10")
		for range 2 {
			if err := WriteOCI(dir, ref, img1.Image); err != nil {
				t.Fatal(err)
			}
		}
		p, err := layout.FromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Manifests) != 1 || m.Manifests[0].Digest != d1 || m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != ref {
			t.Errorf("index %+v", m.Manifests)
		}
	})

	t.Run("push to a registry", func(t *testing.T) {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		defer srv.Close()
		addr := strings.TrimPrefix(srv.URL, "http://")
		_, port, _ := strings.Cut(addr, ":")
		// Plain HTTP is for registry.local only: anything else is refused...
		if err := Push(context.Background(), s.Reference(addr+"/k8s-p10"), img1.Image); err == nil || !strings.Contains(err.Error(), "plain HTTP") {
			t.Fatalf("push over plain HTTP to %s: want a refusal, got %v", addr, err)
		}
		// ...and registry.local (here mapped to the test server) is reached over it.
		defer localRegistryOnLoopback()()
		ref := s.Reference("registry.local:" + port + "/k8s-p10")
		if err := Push(context.Background(), ref, img1.Image); err != nil {
			t.Fatal(err)
		}
		r, err := name.ParseReference(strings.Replace(ref, "registry.local", "127.0.0.1", 1), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(r)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := got.Digest(); d != d1 {
			t.Errorf("pulled %s, pushed %s", d, d1)
		}
	})

	t.Run("push to nothing says what to do", func(t *testing.T) {
		srv := httptest.NewServer(nil)
		_, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
		srv.Close()
		defer localRegistryOnLoopback()()
		err := Push(context.Background(), "registry.local:"+port+"/x/pause:1", img1.Image)
		if err == nil || !strings.Contains(err.Error(), "local-registry.sh") {
			t.Fatalf("got %v, want a hint at the registry script", err)
		}
	})
}

func TestRunOptions(t *testing.T) {
	dir := fakeBinDir(t)
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"no destination", Options{BinDir: dir, Registry: "registry.local/k8s-p10"}, "nothing to do"},
		{"no registry", Options{BinDir: dir, Push: true}, "no registry"},
		{"bad registry", Options{BinDir: dir, Registry: "Registry.local/K8s", Push: true}, "not a valid registry prefix"},
		{"unknown image", Options{BinDir: dir, Registry: "registry.local/k8s-p10", Push: true, Only: []string{"kubelet"}}, `unknown image "kubelet"`},
		{"no bin dir", Options{BinDir: filepath.Join(dir, "nope"), Registry: "registry.local/k8s-p10", Push: true}, "make components"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), tt.o, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRetarget(t *testing.T) {
	for name, want := range map[string]string{
		"registry.local/k8s-p10/kube-apiserver:v1.35.8":   "site:5000/k8s-c10f1/kube-apiserver:v1.35.8",
		"registry.local/e2e-test-images/agnhost:2.59":     "site:5000/e2e-test-images/agnhost:2.59",
		"registry.local/e2e-test-images/busybox:1.37.0-1": "site:5000/e2e-test-images/busybox:1.37.0-1",
		"registry.altlinux.org/k8s-p10/coredns:v1.13.1":   "site:5000/k8s-c10f1/coredns:v1.13.1",
	} {
		got, err := retarget(name, "site:5000/k8s-c10f1/")
		if err != nil || got != want {
			t.Errorf("retarget(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
}

// localRegistryOnLoopback makes registry.local dial 127.0.0.1 (a test server) until the
// returned func restores the transport.
func localRegistryOnLoopback() func() {
	base := remote.DefaultTransport
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, strings.Replace(a, "registry.local", "127.0.0.1", 1))
	}
	remote.DefaultTransport = tr
	return func() { remote.DefaultTransport = base }
}
