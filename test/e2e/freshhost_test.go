//go:build e2e

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/u7s/u7s/test/hosts"
)

// repoRoot is the source tree under test (test/e2e is two levels down).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "../.."))
}

// hostsTool is the hosts' tool that scripts/hosts.sh runs, built by it once per test process.
var hostsTool struct {
	once sync.Once
	bin  string
	err  error
}

// hostsCmd runs scripts/hosts.sh with args, output in the log and returned. Only `up` goes
// through the script (it makes the .deb the hosts install when u7s is newer); every other verb
// runs the tool directly: the script's `go build` of it, a no-op here, cost a tenth of a CPU
// second on each of the thousands of commands the tests run on their hosts.
func hostsCmd(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := repoRoot(t)
	cmd := exec.Command(filepath.Join(root, "scripts/hosts.sh"), args...)
	if len(args) > 0 && args[0] != "up" {
		// The script builds the tool (one place for how): once here, by a harmless verb.
		hostsTool.once.Do(func() {
			hostsTool.bin = filepath.Join(root, "_output/bin/u7s-hosts")
			if out, err := exec.Command(filepath.Join(root, "scripts/hosts.sh"), "list").CombinedOutput(); err != nil {
				hostsTool.err = fmt.Errorf("building the hosts' tool (scripts/hosts.sh list): %v\n%s", err, out)
			}
		})
		if hostsTool.err != nil {
			return "", hostsTool.err
		}
		cmd = exec.Command(hostsTool.bin, args...)
		cmd.Env = append(os.Environ(), "U7S_ROOT="+root)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// onHost runs a shell script as root on a test host.
func onHost(t *testing.T, name, script string) (string, error) {
	t.Helper()
	return hostsCmd(t, script, "exec", name, "--", "bash", "-euo", "pipefail", "-s")
}

func mustOnHost(t *testing.T, name, script string) string {
	t.Helper()
	out, err := onHost(t, name, script)
	if err != nil {
		t.Fatalf("on %s: %v: %s\n%s\n--- script:\n%s", name, err, why(out), out, script)
	}
	return out
}

// TestFreshHost runs the README's quick start as a new user would, as root on a fresh minimal
// Debian 12 (debootstrap minbase with systemd and make, booted in systemd-nspawn) that has
// none of the packages u7s needs: `make cluster` must install them, build, and bring up a
// Ready node. The Go toolchain and Go's caches come from this machine (a machine of this kind
// has Go; the caches only make the build warm, they are not packages).
func TestFreshHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end test needs root")
	}
	const name = "fresh"
	gocache := strings.TrimSpace(must(t, "go", "env", "GOCACHE"))
	gomodcache := strings.TrimSpace(must(t, "go", "env", "GOMODCACHE"))
	goroot := strings.TrimSpace(must(t, "go", "env", "GOROOT"))

	// Always from a fresh copy of the cached root.
	if out, err := hostsCmd(t, "", "down", name); err != nil {
		t.Fatalf("removing an old host %s: %v\n%s", name, err, out)
	}
	start := time.Now()
	// Its build yields to the other suites' nodes (their etcd misses deadlines on a starved machine).
	args := []string{"up", "--fresh", "--own-registry", "--cpu-weight", "25",
		"--bind-ro", goroot + ":/usr/local/go",
		"--bind", gocache + ":/root/.cache/go-build",
		"--bind", gomodcache + ":/root/go/pkg/mod"}
	// The components Go alone builds, from this machine's cache as Go's own caches: their links
	// took most of the half hour make cluster took here. The host builds the others itself (cgo,
	// C, Debian's packages), which is what tests its build dependencies.
	for _, dir := range strings.Fields(must(t, filepath.Join(repoRoot(t), "scripts/build-components.sh"), "--go-only-caches")) {
		args = append(args, "--bind-ro", dir+":/root/.cache/u7s/components/"+filepath.Base(dir))
	}
	// The others the fresh host built itself in an earlier run with the same package list keep
	// in a cache of the fresh hosts' own, as this machine keeps its builds: under the other
	// lanes' load their builds (cri-o's and runc's links, busybox from source) took the fresh
	// host 15 to 48 minutes. A change to what host-deps installs empties it, so that the fresh
	// host builds them all again with only those packages.
	args = append(args, hostBuiltCaches(t)...)
	out, err := hostsCmd(t, "", append(args, name)...)
	if err != nil {
		t.Fatalf("hosts.sh up %s: %v\n%s", name, err, out)
	}
	t.Logf("fresh host booted in %.1fs", time.Since(start).Seconds())
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("U7S_E2E_KEEP") != "" {
			t.Logf("keeping host %s for inspection (U7S_E2E_KEEP)", name)
			return
		}
		if out, err := hostsCmd(t, "", "down", name); err != nil {
			t.Errorf("removing host %s: %v\n%s", name, err, out)
		}
	})

	// The source tree as a clone has it: tracked files plus new ones not ignored.
	files := must(t, "git", "-C", repoRoot(t), "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	tarc := exec.Command("tar", "-C", repoRoot(t), "--null", "-T", "-", "-cf", "-")
	tarc.Stdin = strings.NewReader(files)
	tarball, err := tarc.Output()
	if err != nil {
		t.Fatalf("packing the source tree: %v", err)
	}
	dst := filepath.Join("/var/lib/u7s-hosts", name, "rootfs/root/u7s")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	untar := exec.Command("tar", "-C", dst, "-xf", "-")
	untar.Stdin = bytes.NewReader(tarball)
	if out, err := untar.CombinedOutput(); err != nil {
		t.Fatalf("unpacking the source tree on the host: %v\n%s", err, out)
	}

	t.Run("the host lacks what u7s needs", func(t *testing.T) {
		out, err := onHost(t, name, "cd /root/u7s && scripts/host-deps.sh --check")
		if err == nil {
			t.Fatalf("host-deps --check passed on a fresh host:\n%s", out)
		}
		for _, p := range []string{"slirp4netns", "uidmap", "libseccomp-dev", "docker-registry", "iproute2"} {
			if !strings.Contains(out, p) {
				t.Errorf("host-deps --check does not name the missing package %s:\n%s", p, out)
			}
		}
	})

	t.Run("make cluster brings up a Ready node", func(t *testing.T) {
		start := time.Now()
		out, err := onHost(t, name, "cd /root/u7s && make cluster 2>&1")
		t.Logf("make cluster on the fresh host (%.0fs):\n%s", time.Since(start).Seconds(), tail(out, 60))
		if err != nil {
			logs, _ := onHost(t, name, "tail -n 30 /var/log/u7s/*.log 2>&1 || true")
			t.Fatalf("make cluster on a fresh host: %v\n%s", err, logs)
		}
		var built []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "[components]") {
				built = append(built, l)
			}
		}
		t.Logf("the components on the fresh host:\n%s", strings.Join(built, "\n"))
		t.Logf("FIGURE fresh-host make cluster (warm Go caches, Go-only components from the cache): %.0f s", time.Since(start).Seconds())
	})
	if t.Failed() {
		return
	}

	t.Run("every package and command is present afterwards", func(t *testing.T) {
		mustOnHost(t, name, "cd /root/u7s && scripts/host-deps.sh --check")
		// And the ones the node itself runs, as u7s's own preflight names them.
		mustOnHost(t, name, "for c in u7s kubectl newuidmap newgidmap slirp4netns conmon nsenter iptables; do command -v $c; done")
	})

	t.Run("the node is Ready and its pods run", func(t *testing.T) {
		script := `export KUBECONFIG=/etc/kubernetes/admin.conf
kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}'
kubectl get pods -A --no-headers | awk '$4 != "Running" { bad = 1; print "not running: " $0 } END { exit bad }'`
		var out string
		eventually(t, "node fresh Ready with every pod Running", 3*time.Minute, func() error {
			var err error
			out, err = onHost(t, name, script)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if !strings.Contains(out, "fresh True") {
				return fmt.Errorf("node not Ready: %s", out)
			}
			return nil
		})
		t.Logf("%s", out)
		// kubectl and the node carry Kubernetes' version stamps, never an empty commit.
		v := mustOnHost(t, name, "kubectl version -o json --client")
		if strings.Contains(v, `"gitCommit": ""`) {
			t.Errorf("kubectl version has an empty gitCommit:\n%s", v)
		}
	})
}

// hostBuiltCaches returns the fresh host's --bind arguments for the components it builds itself
// (cgo, C, Debian's packages): a cache directory each, under one directory per content of
// scripts/host-deps.sh; the directories of other contents are removed.
func hostBuiltCaches(t *testing.T) []string {
	t.Helper()
	deps := mustRead(t, filepath.Join(repoRoot(t), "scripts/host-deps.sh"))
	top := filepath.Join(hosts.CacheDir, "fresh-components")
	sum := sha256.Sum256([]byte(deps))
	dir := filepath.Join(top, hex.EncodeToString(sum[:8]))
	old, _ := filepath.Glob(filepath.Join(top, "*"))
	for _, o := range old {
		if o != dir {
			os.RemoveAll(o)
		}
	}
	var args []string
	for _, c := range strings.Fields(must(t, filepath.Join(repoRoot(t), "scripts/build-components.sh"), "--host-built")) {
		if err := os.MkdirAll(filepath.Join(dir, c), 0o755); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--bind", filepath.Join(dir, c)+":/root/.cache/u7s/components/"+c)
	}
	return args
}

// why is the line of a command's output that says why it failed, for the first line of a test's
// message (the only one the CI summary shows): u7s's last "u7s: error:" line, else the last line.
func why(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	l := lines[len(lines)-1]
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "u7s: error:") {
			l = lines[i]
			break
		}
	}
	return strings.TrimSpace(l)
}

// keptLogs is, for an init or join that failed on host h and kept its logs (its output out
// says where), the last lines of the kubelet's and the control plane's logs there.
func keptLogs(t *testing.T, h, out string) string {
	t.Helper()
	m := regexp.MustCompile(`its logs are kept in (/var/log/u7s-failed/[a-z]+-[0-9TZ]+)`).FindStringSubmatch(out)
	if m == nil {
		return "(no logs kept)"
	}
	logs, _ := onHost(t, h, `cd `+m[1]+` && for f in kubelet.log pods/*/*/*.log; do [ -f "$f" ] && { echo "--- $h:`+m[1]+`/$f"; tail -n 15 "$f"; }; done; true`)
	return logs
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
