package registry

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/u7s/u7s/internal/version"
)

const (
	spserverOSRelease = "NAME=\"ALT SP Server\"\nVERSION_ID=10\nCPE_NAME=\"cpe:/o:alt:spserver:10\"\n"
	p10OSRelease      = "NAME=\"ALT\"\nCPE_NAME=\"cpe:/o:alt:alt:p10\"\n"
	plainHosts        = "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n"
)

// missingFile marks a file the test must not create.
const missingFile = "\x00missing"

func TestResolve(t *testing.T) {
	unset := map[string]string{}
	tests := []struct {
		name      string
		env       map[string]string // nil value: U7S_REGISTRY unset
		hosts     string            // missingFile: absent; "/": a directory
		osRelease string
		want      string
		native    bool
		explain   string // a substring of the explanation
		wantErr   string // a substring of the error
	}{
		// /etc/hosts.
		{name: "hosts active line", env: unset, hosts: "127.0.0.1 localhost\n\n10.0.0.5 registry.local\n", osRelease: p10OSRelease,
			want: "registry.local/k8s-p10", explain: "hosts:3: 10.0.0.5 registry.local → prefix registry.local"},
		{name: "hosts whole-line comment", env: unset, hosts: plainHosts + "# 10.0.0.5 registry.local\n", osRelease: p10OSRelease,
			want: "registry.altlinux.org/k8s-p10", explain: "no active line names registry.local"},
		{name: "hosts indented comment", env: unset, hosts: plainHosts + "   #10.0.0.5 registry.local\n", osRelease: p10OSRelease,
			want: "registry.altlinux.org/k8s-p10"},
		{name: "hosts trailing comment", env: unset, hosts: "127.0.0.1 localhost # registry.local\n", osRelease: p10OSRelease,
			want: "registry.altlinux.org/k8s-p10"},
		{name: "hosts comment glued to a name", env: unset, hosts: "10.0.0.5 foo#registry.local\n", osRelease: p10OSRelease,
			want: "registry.altlinux.org/k8s-p10"},
		{name: "hosts name before a trailing comment", env: unset, hosts: "10.0.0.5 registry.local # the local registry\n", osRelease: p10OSRelease,
			want: "registry.local/k8s-p10", explain: "hosts:1: 10.0.0.5 registry.local →"},
		{name: "hosts tabs", env: unset, hosts: "10.0.0.5\t\tregistry.local\t\n", osRelease: p10OSRelease,
			want: "registry.local/k8s-p10", explain: "hosts:1: 10.0.0.5 registry.local"},
		{name: "hosts several names", env: unset, hosts: plainHosts + "192.168.1.2 reg registry.local registry\n", osRelease: p10OSRelease,
			want: "registry.local/k8s-p10", explain: "hosts:3: 192.168.1.2 reg registry.local registry"},
		{name: "hosts CRLF", env: unset, hosts: "10.0.0.5 registry.local\r\n", osRelease: p10OSRelease,
			want: "registry.local/k8s-p10"},
		{name: "hosts IPv6", env: unset, hosts: "fd00::5 registry.local\n", osRelease: p10OSRelease,
			want: "registry.local/k8s-p10"},
		{name: "hosts names are case-insensitive", env: unset, hosts: "10.0.0.5 Registry.LOCAL\n", osRelease: p10OSRelease,
			want: "registry.local/k8s-p10"},
		{name: "hosts similar names only", env: unset, hosts: "10.0.0.5 registry.localdomain myregistry.local registry.local.example registry\n", osRelease: p10OSRelease,
			want: "registry.altlinux.org/k8s-p10"},
		{name: "hosts name without address", env: unset, hosts: "registry.local\n", osRelease: p10OSRelease,
			want: "registry.altlinux.org/k8s-p10"},
		{name: "hosts invalid address", env: unset, hosts: "registry registry.local\n", osRelease: p10OSRelease,
			want: "registry.altlinux.org/k8s-p10"},
		{name: "hosts missing", env: unset, hosts: missingFile, osRelease: p10OSRelease,
			want: "registry.altlinux.org/k8s-p10", explain: "does not exist: no registry.local"},
		{name: "hosts unreadable", env: unset, hosts: "/", osRelease: p10OSRelease,
			wantErr: "is a directory"},

		// /etc/os-release.
		{name: "cpe double quotes", env: unset, hosts: plainHosts, osRelease: spserverOSRelease,
			want: "registry.altlinux.org/k8s-c10f1", explain: `os-release:3: CPE_NAME="cpe:/o:alt:spserver:10" (CPE_NAME "cpe:/o:alt:spserver:10" contains spserver) → platform k8s-c10f1`},
		{name: "cpe single quotes", env: unset, hosts: plainHosts, osRelease: "CPE_NAME='cpe:/o:alt:spserver:10'\n",
			want: "registry.altlinux.org/k8s-c10f1"},
		{name: "cpe unquoted", env: unset, hosts: plainHosts, osRelease: "CPE_NAME=cpe:/o:alt:spserver:10",
			want: "registry.altlinux.org/k8s-c10f1"},
		{name: "cpe indented, blanks around the value", env: unset, hosts: plainHosts, osRelease: "  CPE_NAME = \t\"cpe:/o:alt:spserver:10\"  \n",
			want: "registry.altlinux.org/k8s-c10f1"},
		{name: "cpe unquoted escape", env: unset, hosts: plainHosts, osRelease: `CPE_NAME=cpe:/o:alt:sp\server:10`,
			want: "registry.altlinux.org/k8s-c10f1"},
		{name: "cpe double-quoted escapes", env: unset, hosts: plainHosts, osRelease: `CPE_NAME="cpe:/o:alt:\"sp\$server\":10"`,
			want: "registry.altlinux.org/k8s-p10", explain: `CPE_NAME "cpe:/o:alt:\"sp$server\":10" does not contain spserver`},
		{name: "cpe double-quoted backslash kept", env: unset, hosts: plainHosts, osRelease: `CPE_NAME="cpe:/o:alt:sp\server:10"`,
			want: "registry.altlinux.org/k8s-p10", explain: `"cpe:/o:alt:sp\\server:10" does not contain`},
		{name: "cpe single quotes keep backslashes", env: unset, hosts: plainHosts, osRelease: `CPE_NAME='cpe:/o:alt:spserver\:10'`,
			want: "registry.altlinux.org/k8s-c10f1", explain: `"cpe:/o:alt:spserver\\:10" contains`},
		{name: "cpe escaped newline", env: unset, hosts: plainHosts, osRelease: "CPE_NAME=\"cpe:/o:alt:sp\\\nserver:10\"\nNAME=x\n",
			want: "registry.altlinux.org/k8s-c10f1", explain: "os-release:1:"},
		{name: "cpe pieces concatenated", env: unset, hosts: plainHosts, osRelease: `CPE_NAME='cpe:/o:alt:sp'"server:10"`,
			want: "registry.altlinux.org/k8s-c10f1"},
		{name: "spserver only in another variable", env: unset, hosts: plainHosts,
			osRelease: "PRETTY_NAME=\"ALT spserver\"\nVARIANT_ID=spserver\nCPE_NAME=\"cpe:/o:alt:workstation:10\"\n",
			want:      "registry.altlinux.org/k8s-p10", explain: "does not contain spserver"},
		{name: "spserver in a commented CPE_NAME", env: unset, hosts: plainHosts,
			osRelease: "#CPE_NAME=\"cpe:/o:alt:spserver:10\"\n; CPE_NAME=spserver\nCPE_NAME=\"cpe:/o:alt:p10\"\n",
			want:      "registry.altlinux.org/k8s-p10"},
		{name: "spserver in a trailing comment", env: unset, hosts: plainHosts, osRelease: "CPE_NAME=\"cpe:/o:alt:p10\" # spserver\n",
			want: "registry.altlinux.org/k8s-p10", explain: `CPE_NAME "cpe:/o:alt:p10" does not contain`},
		{name: "spserver after an unquoted value's comment", env: unset, hosts: plainHosts, osRelease: "CPE_NAME=cpe:/o:alt:p10 #spserver\n",
			want: "registry.altlinux.org/k8s-p10"},
		{name: "similar key only", env: unset, hosts: plainHosts, osRelease: "XCPE_NAME=spserver\nCPE_NAME_X=spserver\n",
			want: "registry.altlinux.org/k8s-p10", explain: "no CPE_NAME"},
		{name: "last assignment wins", env: unset, hosts: plainHosts, osRelease: "CPE_NAME=cpe:/o:alt:p10\nCPE_NAME=cpe:/o:alt:spserver:10\n",
			want: "registry.altlinux.org/k8s-c10f1", explain: "os-release:2:"},
		{name: "os-release missing", env: unset, hosts: plainHosts, osRelease: missingFile,
			want: "registry.altlinux.org/k8s-p10", explain: "does not exist: not spserver"},
		{name: "os-release unreadable", env: unset, hosts: plainHosts, osRelease: "/",
			wantErr: "is a directory"},
		{name: "both", env: unset, hosts: "10.0.0.5 registry.local\n", osRelease: spserverOSRelease,
			want: "registry.local/k8s-c10f1", explain: "registry.local is the local registry: plain HTTP"},
		{name: "both missing", env: unset, hosts: missingFile, osRelease: missingFile,
			want: "registry.altlinux.org/k8s-p10", explain: "registry.altlinux.org: HTTPS"},

		// U7S_REGISTRY set: the files are not read, not even an unreadable one.
		{name: "empty", env: map[string]string{EnvVar: ""}, hosts: "/", osRelease: "/",
			want: "registry.k8s.io", native: true, explain: "set and empty"},
		{name: "given", env: map[string]string{EnvVar: "registry.local/k8s-p10"}, hosts: "/", osRelease: "/",
			want: "registry.local/k8s-p10", explain: "used as given"},
		{name: "given altlinux", env: map[string]string{EnvVar: "registry.altlinux.org/k8s-c10f1"}, hosts: "10.0.0.5 registry.local\n", osRelease: p10OSRelease,
			want: "registry.altlinux.org/k8s-c10f1"},
		{name: "trailing slash", env: map[string]string{EnvVar: "registry.local/k8s-p10/"},
			want: "registry.local/k8s-p10", explain: "trailing slashes dropped"},
		{name: "trailing slashes", env: map[string]string{EnvVar: "registry.local/k8s-p10///"},
			want: "registry.local/k8s-p10"},
		{name: "host only", env: map[string]string{EnvVar: "registry.local"},
			want: "registry.local"},
		{name: "host and port", env: map[string]string{EnvVar: "registry.local:5000/k8s-p10"},
			want: "registry.local:5000/k8s-p10", explain: "plain HTTP"},
		{name: "deep path and separators", env: map[string]string{EnvVar: "reg.example.com/a/b.c/d__e/f--g"},
			want: "reg.example.com/a/b.c/d__e/f--g"},
		{name: "IP and port", env: map[string]string{EnvVar: "10.0.0.5:5000/k8s"},
			want: "10.0.0.5:5000/k8s"},
		{name: "IPv6", env: map[string]string{EnvVar: "[fd00::5]:5000/k8s"},
			want: "[fd00::5]:5000/k8s"},
		{name: "localhost and port", env: map[string]string{EnvVar: "localhost:5000/k8s"},
			want: "localhost:5000/k8s"},
		{name: "localhost without port", env: map[string]string{EnvVar: "localhost/k8s"}, wantErr: "is not a registry host"},
		{name: "uppercase host", env: map[string]string{EnvVar: "Registry.Example.COM/k8s"},
			want: "Registry.Example.COM/k8s"},
		{name: "native named explicitly", env: map[string]string{EnvVar: "registry.k8s.io/"},
			want: "registry.k8s.io", native: true, explain: "names the native Kubernetes registry"},

		// Invalid values.
		{name: "space inside", env: map[string]string{EnvVar: "registry.local/k8s p10"}, wantErr: "blank or control character"},
		{name: "leading space", env: map[string]string{EnvVar: " registry.local/k8s-p10"}, wantErr: "blank or control character"},
		{name: "trailing newline", env: map[string]string{EnvVar: "registry.local/k8s-p10\n"}, wantErr: "blank or control character"},
		{name: "uppercase path", env: map[string]string{EnvVar: "registry.local/K8s-p10"}, wantErr: "must be lowercase"},
		{name: "http scheme", env: map[string]string{EnvVar: "http://registry.local/k8s-p10"}, wantErr: "drop the scheme (http://)"},
		{name: "https scheme", env: map[string]string{EnvVar: "https://registry.altlinux.org/k8s-p10"}, wantErr: "drop the scheme (https://)"},
		{name: "empty segment", env: map[string]string{EnvVar: "registry.local//k8s-p10"}, wantErr: "empty path segment"},
		{name: "leading slash", env: map[string]string{EnvVar: "/registry.local/k8s-p10"}, wantErr: "empty path segment"},
		{name: "only slashes", env: map[string]string{EnvVar: "//"}, wantErr: "names no registry host"},
		{name: "no host", env: map[string]string{EnvVar: "k8s-p10"}, wantErr: "is not a registry host"},
		{name: "no host with path", env: map[string]string{EnvVar: "library/k8s-p10"}, wantErr: "is not a registry host"},
		{name: "tag", env: map[string]string{EnvVar: "registry.local/k8s-p10:v1"}, wantErr: "without tag or digest"},
		{name: "digest", env: map[string]string{EnvVar: "registry.local/k8s@sha256:00"}, wantErr: "without tag or digest"},
		{name: "bad port", env: map[string]string{EnvVar: "registry.local:99999/k8s"}, wantErr: "not a number from 1 to 65535"},
		{name: "empty port", env: map[string]string{EnvVar: "registry.local:/k8s"}, wantErr: "not a number from 1 to 65535"},
		{name: "empty label", env: map[string]string{EnvVar: "registry..local/k8s"}, wantErr: "is not a DNS label"},
		{name: "underscore in host", env: map[string]string{EnvVar: "reg_istry.local/k8s"}, wantErr: "is not a DNS label"},
		{name: "bad separator", env: map[string]string{EnvVar: "registry.local/k8s_-p10"}, wantErr: "single separators"},
		{name: "leading separator", env: map[string]string{EnvVar: "registry.local/-k8s"}, wantErr: "single separators"},
		{name: "too long", env: map[string]string{EnvVar: "registry.local/" + strings.Repeat("a", 250)}, wantErr: "U7S_REGISTRY="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := func(name, content string) string {
				switch content {
				case missingFile:
					return filepath.Join(dir, name)
				case "/":
					return dir // reading a directory fails, even as root
				case "":
					content = "# unused\n"
				}
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}
			src := Source{
				Env: func(k string) (string, bool) {
					v, ok := tt.env[k]
					return v, ok
				},
				HostsFile:     file("hosts", tt.hosts),
				OSReleaseFile: file("os-release", tt.osRelease),
			}
			r, err := Resolve(src)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Resolve() error = %v, want one containing %q (resolution %+v)", err, tt.wantErr, r)
				}
				if !strings.Contains(err.Error(), EnvVar) {
					t.Errorf("error %q does not name %s, the way out", err, EnvVar)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve() error = %v", err)
			}
			if r.Value != tt.want || r.Native != tt.native {
				t.Errorf("Resolve() = %q native=%v, want %q native=%v\n%s", r.Value, r.Native, tt.want, tt.native, strings.Join(r.Explanation, "\n"))
			}
			if expl := strings.Join(r.Explanation, "\n"); !strings.Contains(expl, tt.explain) {
				t.Errorf("explanation does not contain %q:\n%s", tt.explain, expl)
			}
		})
	}
}

func TestResolveDefaults(t *testing.T) {
	t.Setenv(EnvVar, "registry.local/k8s-p10")
	r, err := Resolve(Source{})
	if err != nil || r.Value != "registry.local/k8s-p10" {
		t.Fatalf("Resolve(Source{}) = %+v, %v; want the environment's value", r, err)
	}
}

func TestImages(t *testing.T) {
	// The expectations spell the pinned tags out: a pin that moves must be seen here.
	p := version.Pinned
	tests := []struct {
		r          Resolution
		images     []string
		test       []string
		repository string
		insecure   []string
	}{
		{
			r: Resolution{Value: "registry.local/k8s-c10f1"},
			images: []string{
				"registry.local/k8s-c10f1/kube-apiserver:v1.36.3",
				"registry.local/k8s-c10f1/kube-controller-manager:v1.36.3",
				"registry.local/k8s-c10f1/kube-scheduler:v1.36.3",
				"registry.local/k8s-c10f1/kube-proxy:v1.36.3",
				"registry.local/k8s-c10f1/etcd:3.6.8-0",
				"registry.local/k8s-c10f1/coredns:v1.14.2",
				"registry.local/k8s-c10f1/pause:3.10.2",
				"registry.local/k8s-c10f1/flannel:v0.28.7",
				"registry.local/k8s-c10f1/u7s-netpol:v2.1.0-u7s.1",
				"registry.local/k8s-c10f1/u7s-local-path:v11.0.1-u7s.1",
				"registry.local/k8s-c10f1/metrics-server:v0.8.0",
			},
			test:       testRefs("registry.local"),
			repository: "registry.local/k8s-c10f1",
			insecure:   []string{"registry.local"},
		},
		{
			r:          Resolution{Value: "registry.altlinux.org/k8s-p10"},
			test:       testRefs("registry.altlinux.org"),
			repository: "registry.altlinux.org/k8s-p10",
		},
		{
			r:          Resolution{Value: "registry.local:5000"},
			test:       testRefs("registry.local:5000"),
			repository: "registry.local:5000",
			insecure:   []string{"registry.local:5000"},
		},
		{
			r: Resolution{Value: NativeRegistry, Native: true},
			images: []string{
				"registry.k8s.io/kube-apiserver:v1.36.3",
				"registry.k8s.io/kube-controller-manager:v1.36.3",
				"registry.k8s.io/kube-scheduler:v1.36.3",
				"registry.k8s.io/kube-proxy:v1.36.3",
				"registry.k8s.io/etcd:3.6.8-0",
				"registry.k8s.io/coredns/coredns:v1.14.2",
				"registry.k8s.io/pause:3.10.2",
				"ghcr.io/flannel-io/flannel:v0.28.7",
				"docker.io/cloudnativelabs/kube-router:v2.1.0",
				"registry.k8s.io/metrics-server/metrics-server:v0.8.0",
			},
			test:       testRefs("registry.k8s.io"),
			repository: "registry.k8s.io",
		},
	}
	for _, tt := range tests {
		t.Run(tt.r.Value, func(t *testing.T) {
			imgs := tt.r.Images()
			if tt.images != nil && !reflect.DeepEqual(Refs(imgs), tt.images) {
				t.Errorf("Images() = %q, want %q", Refs(imgs), tt.images)
			}
			var names []string
			for _, img := range imgs {
				names = append(names, img.Name)
				if _, err := parseRef(img.Ref); err != nil {
					t.Error(err)
				}
			}
			want := []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns", "pause", "flannel", "u7s-netpol", "u7s-local-path", "metrics-server"}
			if tt.r.Native {
				// Upstream has no image of u7s's volume provisioner.
				want = slices.DeleteFunc(want, func(n string) bool { return n == "u7s-local-path" })
			}
			if !reflect.DeepEqual(names, want) {
				t.Errorf("image names %q, want %q", names, want)
			}
			if got := Refs(tt.r.TestImages()); !reflect.DeepEqual(got, tt.test) {
				t.Errorf("TestImages() = %q, want %q", got, tt.test)
			}
			if got := tt.r.ImageRepository(); got != tt.repository {
				t.Errorf("ImageRepository() = %q, want %q", got, tt.repository)
			}
			if got := InsecureRegistries(tt.r); !reflect.DeepEqual(got, tt.insecure) {
				t.Errorf("InsecureRegistries() = %q, want %q", got, tt.insecure)
			}
			if imgs[7].Ref != tt.r.FlannelImage(p) {
				t.Errorf("FlannelImage() = %q, Images() has %q", tt.r.FlannelImage(p), imgs[7].Ref)
			}
			if imgs[8].Ref != tt.r.NetpolImage(p) {
				t.Errorf("NetpolImage() = %q, Images() has %q", tt.r.NetpolImage(p), imgs[8].Ref)
			}
		})
	}
	// The pinned versions give the same shape.
	if got := (Resolution{Value: "registry.local/k8s-p10"}).Images()[0].Ref; got != "registry.local/k8s-p10/kube-apiserver:"+version.Pinned.Kubernetes {
		t.Errorf("pinned kube-apiserver = %q", got)
	}
}

func TestInsecure(t *testing.T) {
	for ref, want := range map[string]bool{
		"registry.local/k8s-p10/pause:3.10.2":     true,
		"registry.local":                          true,
		"registry.local:5000/k8s/etcd:3.6.8-0":    true,
		"REGISTRY.LOCAL/k8s/etcd:3.6.8-0":         true,
		"registry.local:/x":                       false,
		"registry.local:http/x":                   false,
		"registry.localdomain/k8s/pause:3.10.2":   false,
		"myregistry.local/k8s/pause:3.10.2":       false,
		"registry.local.example.com/k8s/pause:1":  false,
		"registry.altlinux.org/k8s-p10/pause:3.1": false,
		"registry.k8s.io/pause:3.10.2":            false,
		"10.0.0.5:5000/k8s/pause:3.10.2":          false,
		"localhost:5000/k8s/pause:3.10.2":         false,
	} {
		if got := Insecure(ref); got != want {
			t.Errorf("Insecure(%q) = %v, want %v", ref, got, want)
		}
	}
}

// testRefs are the test images under host, in the order of images.All.
func testRefs(host string) []string {
	var out []string
	for _, ref := range []string{"busybox:1.37.0-1", "agnhost:2.63.0", "agnhost:2.55", "glibc-dns-testing:2.0.0",
		"kitten:1.8", "nautilus:1.8", "nginx:1.15-4", "nonewprivs:1.4", "nonroot:1.5", "sample-apiserver:1.29.2"} {
		out = append(out, host+"/e2e-test-images/"+ref)
	}
	return out
}

// TestE2ERepoList: upstream's e2e suite, given the repo list, asks for each test image exactly
// where the catalogue puts it, and for pause and etcd where the node images are.
func TestE2ERepoList(t *testing.T) {
	for _, r := range []Resolution{{Value: "registry.local/k8s-p10"}, {Value: "registry.local:5001/k8s-p10"}, nativeResolution("")} {
		list := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(r.E2ERepoList()), "\n") {
			k, v, ok := strings.Cut(l, ": ")
			if !ok {
				t.Fatalf("%s: line %q is not KEY: VALUE", r.Value, l)
			}
			list[k] = v
		}
		for _, img := range r.TestImages() {
			// Upstream's image names are promoterE2eRegistry/NAME:TAG (test/utils/image).
			want := list["promoterE2eRegistry"] + "/"
			if rest, ok := strings.CutPrefix(img.Ref, want); !ok || strings.Contains(rest, "/") {
				t.Errorf("%s: test image %s is %s, but the e2e suite asks for %sNAME:TAG", r.Value, img.Name, img.Ref, want)
			}
		}
		for _, img := range r.Images() {
			if img.Name == "pause" || img.Name == "etcd" {
				if want := list["gcRegistry"] + "/" + img.Name + ":"; !strings.HasPrefix(img.Ref, want) {
					t.Errorf("%s: %s is %s, but the e2e suite asks for %s...", r.Value, img.Name, img.Ref, want)
				}
			}
		}
	}
}
