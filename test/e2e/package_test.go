//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/release"
)

// output finds the one file of _output matching pattern.
func output(t *testing.T, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(repoRoot(t), "_output", pattern))
	if len(m) != 1 {
		t.Fatalf("want one _output/%s (make deb rpm images-archive), found %v", pattern, m)
	}
	return m[0]
}

func size(t *testing.T, f string) string {
	st, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%.1f MiB", float64(st.Size())/(1<<20))
}

// TestPackage checks the packages, then uses the .deb on a fresh host as an admin does.
func TestPackage(t *testing.T) {
	deb, rpm, srpm := output(t, "u7s_*.deb"), output(t, "u7s-*.x86_64.rpm"), output(t, "u7s-*.src.rpm")
	archive := output(t, "u7s-images-*.tar")
	t.Logf("FIGURE package sizes: deb %s, rpm %s, src.rpm %s, image archive %s", size(t, deb), size(t, rpm), size(t, srpm), size(t, archive))

	t.Run("contents, scripts, dependencies, version, lint", func(t *testing.T) {
		debList := must(t, "dpkg-deb", "-c", deb)
		rpmList := must(t, "rpm", "-qlp", rpm)
		want := []string{"/usr/bin/u7s", "/usr/bin/kubectl", "/usr/libexec/u7s/bin/u7s-runc", "/usr/libexec/u7s/cni/bridge",
			"/usr/libexec/u7s/cni/flannel", "/usr/lib/systemd/system/u7s.service", "/usr/lib/systemd/system/u7s-etcd-snapshot.service", "/usr/lib/systemd/system/u7s-etcd-snapshot.timer", "/usr/lib/systemd/system/u7s-maintenance.timer", "/usr/lib/sysctl.d/90-u7s.conf",
			"/usr/lib/modules-load.d/u7s.conf", "/usr/share/man/man1/u7s.1.gz", "/usr/share/man/man1/u7s-join.1.gz",
			"/usr/share/bash-completion/completions/u7s", "/usr/share/zsh/vendor-completions/_u7s",
			"/usr/share/fish/vendor_completions.d/u7s.fish", "/usr/share/doc/u7s/README.md"}
		for _, b := range release.Binaries {
			want = append(want, filepath.Join(paths.LibexecBin, b))
		}
		for _, f := range want {
			if !strings.Contains(debList, "."+f) {
				t.Errorf("the .deb lacks %s", f)
			}
			if !strings.Contains(rpmList, f+"\n") {
				t.Errorf("the .rpm lacks %s", f)
			}
		}
		scripts := must(t, "rpm", "-qp", "--scripts", rpm)
		for _, want := range []string{"u7s node-user", "systemctl preset u7s.service", "disable --now u7s.service", "daemon-reload"} {
			if !strings.Contains(scripts, want) {
				t.Errorf("the rpm's scripts lack %q:\n%s", want, scripts)
			}
		}
		depends := must(t, "dpkg-deb", "-f", deb, "Depends")
		for _, d := range []string{"slirp4netns", "conmon", "uidmap", "iptables"} {
			if !strings.Contains(depends, d) {
				t.Errorf("the .deb does not depend on %s: %s", d, depends)
			}
		}
		// One version: the package's is what u7s prints.
		v := strings.Fields(must(t, filepath.Join(repoRoot(t), "_output/bin/u7s"), "version"))[1]
		if got := strings.TrimSpace(must(t, "dpkg-deb", "-f", deb, "Version")); got != v+"-1" {
			t.Errorf("deb version %q, u7s version %q", got, v)
		}
		if got := strings.TrimSpace(must(t, "rpm", "-qp", "--qf", "%{VERSION}", rpm)); got != v {
			t.Errorf("rpm version %q, u7s version %q", got, v)
		}
		lint, _ := run(t, "lintian", deb)
		for _, l := range strings.Split(lint, "\n") {
			if strings.HasPrefix(l, "E:") {
				t.Errorf("lintian: %s", l)
			}
		}
		rl, _ := run(t, "rpmlint", "-r", filepath.Join(repoRoot(t), "rpm/rpmlintrc"), rpm, srpm)
		if !strings.Contains(rl, " 0 errors") {
			t.Errorf("rpmlint finds errors:\n%s", rl)
		}
	})

	t.Run("apt-get install on a fresh host, init at 10.0.2.15, reinstall while running, reset, purge, install again", func(t *testing.T) {
		const h = "pkg"
		if out, err := hostsCmd(t, "", "down", h); err != nil {
			t.Fatal(out)
		}
		if out, err := hostsCmd(t, "", "up", "--fresh", h); err != nil {
			t.Fatalf("hosts.sh up: %v\n%s", err, out)
		}
		t.Cleanup(func() {
			if !(t.Failed() && os.Getenv("U7S_E2E_KEEP") != "") {
				hostsCmd(t, "", "down", h)
			}
		})
		if out, err := exec.Command("cp", deb, filepath.Join("/var/lib/u7s-hosts", h, "rootfs/root/u7s.deb")).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		install := "cd /root && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ./u7s.deb >/dev/null"
		start := time.Now()
		mustOnHost(t, h, install)
		ids := mustOnHost(t, h, "id -u u7s-admin; grep ^u7s-admin: /etc/subuid")
		// At 10.0.2.15, as qemu's and VirtualBox's NAT make a host: inside slirp4netns's own
		// 10.0.2.0/24, so the namespace takes another network, and the node reaches itself.
		mustOnHost(t, h, "ip addr add 10.0.2.15/24 dev host0")
		out, err := onHost(t, h, "u7s init --schedule-workloads --apiserver-advertise-address 10.0.2.15")
		if err != nil {
			t.Fatalf("init from the package at 10.0.2.15: %v: %s\n%s", err, why(out), tail(out, 40))
		}
		t.Logf("FIGURE apt-get install on a fresh host to a Ready node: %.0f s", time.Since(start).Seconds())
		if !strings.Contains(out, "namespace network (slirp4netns): 10.0.0.0/24") {
			t.Errorf("init at 10.0.2.15 does not say it chose 10.0.0.0/24 for the namespace:\n%s", tail(out, 40))
		}
		if st := mustOnHost(t, h, "u7s status"); !strings.Contains(st, "network 10.0.0.0/24") {
			t.Errorf("u7s status does not name the namespace's network:\n%s", st)
		}
		if ip := mustKc(t, h, "get", "node", h, "-o", "jsonpath={.status.addresses[?(@.type=='InternalIP')].address}"); ip != "10.0.2.15" {
			t.Errorf("the node's InternalIP is %s, want 10.0.2.15", ip)
		}

		pid := strings.TrimSpace(mustOnHost(t, h, "systemctl show -P MainPID u7s"))
		mustOnHost(t, h, "cd /root && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall ./u7s.deb >/dev/null")
		if now := strings.TrimSpace(mustOnHost(t, h, "systemctl show -P MainPID u7s")); now != pid {
			t.Errorf("the reinstall restarted the node (supervisor %s, now %s)", pid, now)
		}
		nodesReady(t, h, time.Minute, h)

		mustOnHost(t, h, "u7s reset")
		files := mustOnHost(t, h, "dpkg -L u7s")
		mustOnHost(t, h, "DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq u7s >/dev/null")
		left := mustOnHost(t, h, "while read -r f; do [ -d \"$f\" ] || { [ -e \"$f\" ] && echo \"$f\"; }; done <<'EOF'\n"+files+"EOF\n"+
			"for d in /etc/u7s /run/u7s /etc/kubernetes /usr/libexec/u7s /var/log/u7s; do [ -e $d ] && echo $d; done; true")
		if strings.TrimSpace(left) != "" {
			t.Errorf("files left after reset and purge:\n%s", left)
		}
		mustOnHost(t, h, install)
		if again := mustOnHost(t, h, "id -u u7s-admin; grep ^u7s-admin: /etc/subuid"); again != ids {
			t.Errorf("installed again, u7s-admin has other ids: %q, before %q", again, ids)
		}
	})

	t.Run("u7s images load into an empty registry, then images check finds every image", func(t *testing.T) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "registry.yml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s/storage\nhttp:\n  addr: 0.0.0.0:5001\n", dir)), 0o644); err != nil {
			t.Fatal(err)
		}
		reg := exec.Command("docker-registry", "serve", cfg)
		if err := reg.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = reg.Process.Kill(); _ = reg.Wait() }()
		eventually(t, "the empty registry answers", 20*time.Second, func() error {
			_, err := run(t, "curl", "-fsS", "http://registry.local:5001/v2/")
			return err
		})
		const target = "registry.local:5001/k8s-p10"
		cmd := exec.Command(u7s, "images", "check")
		cmd.Env = append(os.Environ(), "U7S_REGISTRY="+target)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("images check passed on an empty registry:\n%s", out)
		}
		start := time.Now()
		must(t, u7s, "images", "load", archive, "--registry", target)
		t.Logf("FIGURE images load of the archive: %.1f s", time.Since(start).Seconds())
		cmd = exec.Command(u7s, "images", "check")
		cmd.Env = append(os.Environ(), "U7S_REGISTRY="+target)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("images check after load: %v\n%s", err, out)
		}
	})
}
