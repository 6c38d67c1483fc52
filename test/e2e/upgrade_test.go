//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	utilversion "k8s.io/apimachinery/pkg/util/version"

	"github.com/u7s/u7s/internal/version"
)

// upgradeHosts: a control plane and a worker, made with the previous release.
var upgradeHosts = []string{"h6", "h7"}

// TestUpgrade installs the first release of UPGRADE_PATH (scripts/previous-release.sh: this
// tree with that release's versions) on a control plane and a worker, then each later
// release's package over it and upgrades the cluster with u7s upgrade, ending with this tree's,
// while a Service is asked all along.
func TestUpgrade(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end test needs root")
	}
	vals, err := version.Parse(mustRead(t, filepath.Join(repoRoot(t), "internal/version/versions.env")))
	if err != nil {
		t.Fatal(err)
	}
	releases := append(strings.Split(vals["UPGRADE_PATH"], ","), version.Pinned.Kubernetes)
	var debs []string
	for _, r := range releases[:len(releases)-1] {
		d, _ := filepath.Glob(filepath.Join(repoRoot(t), "_output/previous", r, "u7s_*.deb"))
		if len(d) != 1 {
			t.Fatalf("no package of the previous release %s in _output/previous/%s (make previous-release): %v", r, r, d)
		}
		debs = append(debs, d[0])
	}
	cur, _ := filepath.Glob(filepath.Join(repoRoot(t), "_output/u7s_*.deb"))
	if len(cur) == 0 {
		t.Fatal("no package of this tree in _output (make deb)")
	}
	debs = append(debs, cur[len(cur)-1])

	if out, err := hostsCmd(t, "", append([]string{"down"}, upgradeHosts...)...); err != nil {
		t.Fatalf("removing old hosts: %v\n%s", err, out)
	}
	if out, err := hostsCmd(t, "", append([]string{"up", "--deb", debs[0]}, upgradeHosts...)...); err != nil {
		t.Fatalf("hosts.sh up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("U7S_E2E_KEEP") != "" {
			return
		}
		hostsCmd(t, "", append([]string{"down"}, upgradeHosts...)...)
	})
	ip := map[string]string{}
	pub, err := os.ReadFile(signingKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range upgradeHosts {
		out, err := hostsCmd(t, "", "ip", h)
		if err != nil {
			t.Fatal(out)
		}
		ip[h] = strings.TrimSpace(out)
		if out, err := hostsCmd(t, string(pub), "exec", h, "--", "sh", "-c", "mkdir -p /etc/u7s && cat > "+hostSigningKey); err != nil {
			t.Fatalf("copying the signing key to %s: %v\n%s", h, err, out)
		}
	}
	// kubeletOf is the node's kubelet version as the API server has it.
	kubeletOf := func(t *testing.T, n string) string {
		t.Helper()
		return mustKc(t, "h6", "get", "node", n, "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")
	}
	// running is the version of the kubelet process that runs on host h.
	running := func(t *testing.T, h string) string {
		t.Helper()
		// Its binary through /proc: the namespace sees /var/lib through rootlesskit's copy-up.
		return strings.TrimSpace(mustOnHost(t, h, `pid=$(pgrep -xo kubelet) || { ps -eo pid,comm | tail -40; exit 1; }
/proc/$pid/exe --version | cut -d' ' -f2`))
	}

	first := releases[0]
	t.Run("the first release "+first+": a control plane and a worker", func(t *testing.T) {
		if out := mustOnHost(t, "h6", "u7s version"); !strings.Contains(out, "Kubernetes "+first) {
			t.Fatalf("the first package's u7s says %q, want Kubernetes %s", out, first)
		}
		// Ordinary pods may run on the control plane, so that a drain of either node leaves
		// somewhere to go.
		out, err := onHost(t, "h6", "u7s init --schedule-workloads --image-signing-key "+hostSigningKey)
		if err != nil {
			t.Fatalf("u7s init on h6: %v: %s\n%s\n%s", err, why(out), tail(out, 30), keptLogs(t, "h6", out))
		}
		if out, err := onHost(t, "h7", joinLine(t, out, false)+" --image-signing-key "+hostSigningKey); err != nil {
			t.Fatalf("u7s join on h7: %v: %s\n%s\n%s", err, why(out), tail(out, 30), keptLogs(t, "h7", out))
		}
		nodesReady(t, "h6", 3*time.Minute, upgradeHosts...)
		for _, n := range upgradeHosts {
			if v := kubeletOf(t, n); v != first {
				t.Errorf("node %s runs kubelet %s, want %s", n, v, first)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	applyOn(t, "h6", `apiVersion: apps/v1
kind: Deployment
metadata: {name: steady}
spec:
  replicas: 2
  selector: {matchLabels: {app: steady}}
  template:
    metadata: {labels: {app: steady}}
    spec:
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm: {labelSelector: {matchLabels: {app: steady}}, topologyKey: kubernetes.io/hostname}
      containers:
      - {name: c, image: `+agnhost+`, args: [netexec, --http-port=8080]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: steady}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: steady}}
---
apiVersion: v1
kind: Service
metadata: {name: steady}
spec:
  type: NodePort
  selector: {app: steady}
  ports: [{port: 80, targetPort: 8080, nodePort: 30082}]
`)
	mustKc(t, "h6", "rollout", "status", "deployment/steady", "--timeout=180s")
	// A local volume of the default StorageClass on the worker, which every upgrade drains and
	// restarts: its data must come through.
	applyOn(t, "h6", `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: vol}
spec:
  replicas: 1
  serviceName: vol
  selector: {matchLabels: {app: vol}}
  template:
    metadata: {labels: {app: vol}}
    spec:
      nodeSelector: {kubernetes.io/hostname: h7}
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: `+busybox+`, command: [sleep, "36000"], volumeMounts: [{name: data, mountPath: /data}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Mi}}}
`)
	mustKc(t, "h6", "rollout", "status", "statefulset/vol", "--timeout=180s")
	mustKc(t, "h6", "exec", "vol-0", "--", "sh", "-c", "echo from-"+releases[0]+" >/data/f")

	total := time.Now()
	for i := 1; i < len(releases); i++ {
		from, to, last := releases[i-1], releases[i], i == len(releases)-1
		if !upgradeStep(t, ip, debs[i], from, to, last, kubeletOf, running) {
			t.FailNow()
		}
	}
	t.Logf("FIGURE whole cluster upgraded %s in %.0f s", strings.Join(releases, " -> "), time.Since(total).Seconds())

	t.Run("after the upgrades: the local volume's data, the provisioner and the Metrics API at this release", func(t *testing.T) {
		mustKc(t, "h6", "rollout", "status", "statefulset/vol", "--timeout=300s")
		if out := mustKc(t, "h6", "exec", "vol-0", "--", "cat", "/data/f"); !strings.Contains(out, "from-"+releases[0]) {
			t.Errorf("the volume made by %s holds %q after the upgrades", releases[0], out)
		}
		imgs := mustKc(t, "h6", "-n", "kube-system", "get", "ds/u7s-local-path", "deploy/metrics-server", "-o", "jsonpath={range .items[*]}{.spec.template.spec.containers[0].image} {end}")
		for _, want := range []string{":" + version.Pinned.LocalPathImageTag, ":" + version.Pinned.MetricsServer} {
			if !strings.Contains(imgs, want) {
				t.Errorf("after the upgrades the add-ons run %s, want tags %s and %s", imgs, version.Pinned.LocalPathImageTag, version.Pinned.MetricsServer)
			}
		}
		eventually(t, "kubectl top nodes", 3*time.Minute, func() error {
			out, err := kc(t, "h6", "top", "nodes", "--no-headers")
			if err != nil || !strings.Contains(out, "h6 ") || !strings.Contains(out, "h7 ") {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	})
}

// upgradeStep installs deb (release to) on both hosts and upgrades the cluster from from.
func upgradeStep(t *testing.T, ip map[string]string, deb, from, to string, last bool,
	kubeletOf, running func(*testing.T, string) string) bool {
	step := from + " to " + to
	t.Run(step+": a newer package changes nothing the node runs", func(t *testing.T) {
		b := mustRead(t, deb)
		for _, h := range upgradeHosts {
			if out, err := hostsCmd(t, b, "exec", h, "--", "sh", "-c", "cat > /root/u7s.deb"); err != nil {
				t.Fatalf("copying the package to %s: %v\n%s", h, err, out)
			}
			if out, err := onHost(t, h, "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /root/u7s.deb 2>&1 | tail -3; u7s version"); err != nil || !strings.Contains(out, "Kubernetes "+to) {
				t.Fatalf("installing the package of %s on %s: %v\n%s", to, h, err, out)
			}
		}
		// Even restarted, the worker runs the kubelet it was made with. Its node is still Ready
		// from before the restart for a while: wait for the new kubelet process itself.
		mustOnHost(t, "h7", "systemctl restart u7s")
		eventually(t, "a kubelet runs again on h7", 3*time.Minute, func() error {
			out, err := onHost(t, "h7", "pgrep -xo kubelet")
			if err != nil {
				return fmt.Errorf("no kubelet process: %v %s", err, out)
			}
			return nil
		})
		nodesReady(t, "h6", 3*time.Minute, upgradeHosts...)
		for _, h := range upgradeHosts {
			if v := running(t, h); v != from {
				t.Errorf("after the package upgrade %s runs kubelet %s, want %s until u7s upgrade", h, v, from)
			}
			if v := kubeletOf(t, h); v != from {
				t.Errorf("after the package upgrade node %s reports kubelet %s, want %s", h, v, from)
			}
		}
	})
	if last {
		t.Run(step+": refused: a worker before its control plane, a skipped minor, a downgrade, another release", func(t *testing.T) {
			f, tv := semver(t, from), semver(t, to)
			cases := []struct{ host, cmd, want string }{
				{"h7", "u7s upgrade node --yes", "upgrade it first with u7s upgrade apply " + to},
				{"h6", fmt.Sprintf("u7s upgrade apply v%d.%d.0 --yes", f.Major(), f.Minor()+2), "skips a minor"},
				{"h6", fmt.Sprintf("u7s upgrade apply v%d.%d.0 --yes", f.Major(), f.Minor()-1), "does not downgrade"},
				{"h7", "u7s upgrade apply --yes", "is a worker"},
				{"h6", "u7s upgrade apply </dev/null", "not confirmed"},
			}
			if tv.Patch() > 0 {
				other := fmt.Sprintf("v%d.%d.%d", tv.Major(), tv.Minor(), tv.Patch()-1)
				if other != from {
					cases = append(cases, struct{ host, cmd, want string }{"h6", "u7s upgrade apply " + other + " --yes", "this u7s carries Kubernetes " + to + ", not " + other})
				}
			}
			// Each upgrade is a flow of its own, its phases listed and runnable alone.
			for _, flow := range []string{"apply", "node"} {
				if out := mustOnHost(t, "h6", "u7s upgrade "+flow+" phase --help"); !strings.Contains(out, "kubeadm") || !strings.Contains(out, "uncordon") {
					t.Errorf("u7s upgrade %s phase --help lists no phases kubeadm and uncordon:\n%s", flow, out)
				}
			}
			for _, c := range cases {
				out, err := onHost(t, c.host, c.cmd)
				if err == nil || !strings.Contains(out, c.want) || !strings.Contains(out, "nothing was changed") && !strings.Contains(out, "worker") {
					t.Errorf("%s on %s: %v, want refused saying %q and that nothing was changed:\n%s", c.cmd, c.host, err, c.want, tail(out, 15))
				}
			}
			out := mustKc(t, "h6", "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.nodeInfo.kubeletVersion} {.spec.unschedulable} {.metadata.annotations.u7s\.io/maintenance-request}{"\n"}{end}`)
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if f := strings.Fields(l); len(f) != 2 || f[1] != from {
					t.Errorf("after the refused upgrades: %q (want the name and %s only: not cordoned, not asking)", l, from)
				}
			}
			for _, h := range upgradeHosts {
				if got := strings.TrimSpace(mustOnHost(t, h, "readlink /var/lib/u7s/releases/current")); got != from {
					t.Errorf("%s's release is %s after the refused upgrades, want %s", h, got, from)
				}
			}
		})
	}
	t.Run(step+": u7s upgrade plan", func(t *testing.T) {
		out := mustOnHost(t, "h6", "u7s upgrade plan")
		t.Logf("u7s upgrade plan:\n%s", out)
		for _, want := range []string{"1. u7s upgrade apply " + to, "node h7: kubelet", "kubeadm upgrade plan", "u7s upgrade apply " + to} {
			if !strings.Contains(out, want) {
				t.Errorf("the plan lacks %q", want)
			}
		}
	})

	// Requests to the Service through both nodes' NodePorts, all along; and never two nodes
	// cordoned at once, asked every fifth round: a drain's cordon lasts far longer than that,
	// and each ask starts the hosts tool, a shell and kubectl on a machine short of CPU.
	var mu sync.Mutex
	var rounds, bothFailed, failed, maxCordoned int
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for round := 0; ; round++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			fails := 0
			for _, h := range upgradeHosts {
				if _, err := run(t, "curl", "-fsS", "--max-time", "3", fmt.Sprintf("http://%s:30082/hostname", ip[h])); err != nil {
					fails++
				}
			}
			cordoned := -1
			if round%5 == 0 {
				if out, err := kc(t, "h6", "get", "nodes", "-o", "jsonpath={.items[*].spec.unschedulable}"); err == nil {
					cordoned = strings.Count(out, "true")
				}
			}
			mu.Lock()
			rounds++
			failed += fails
			if fails == len(upgradeHosts) {
				bothFailed++
			}
			maxCordoned = max(maxCordoned, cordoned)
			mu.Unlock()
		}
	}()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-done
		}
	}
	defer stopLoad()

	start := time.Now()
	ok := t.Run(step+": u7s upgrade apply on the control plane", func(t *testing.T) {
		s := time.Now()
		out, err := onHost(t, "h6", "u7s upgrade apply --yes")
		t.Logf("FIGURE %s: u7s upgrade apply on h6: %.0f s\n%s", step, time.Since(s).Seconds(), tail(out, 40))
		if err != nil {
			t.Fatalf("u7s upgrade apply: %v", err)
		}
		if v := kubeletOf(t, "h6"); v != to {
			t.Errorf("h6 reports kubelet %s after the upgrade, want %s", v, to)
		}
		if v := running(t, "h6"); v != to {
			t.Errorf("h6 runs kubelet %s after the upgrade, want %s", v, to)
		}
		if v := mustKc(t, "h6", "version", "-o", "json"); !strings.Contains(v, `"gitVersion": "`+to+`"`) {
			t.Errorf("the API server is not at %s:\n%s", to, v)
		}
		if img := mustKc(t, "h6", "-n", "kube-system", "get", "ds", "kube-proxy", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); !strings.HasSuffix(img, ":"+to) {
			t.Errorf("kube-proxy's image is %s after the upgrade, want tag %s", img, to)
		}
		if v := running(t, "h7"); v != from {
			t.Errorf("h7 runs kubelet %s before its own upgrade, want %s", v, from)
		}
		if out := mustOnHost(t, "h6", "ls /var/backups/u7s/etcd"); !strings.Contains(out, "pre-upgrade-"+to) {
			t.Errorf("no etcd snapshot before the upgrade in /var/backups/u7s/etcd:\n%s", out)
		}
	})
	ok = ok && t.Run(step+": u7s upgrade node on the worker", func(t *testing.T) {
		s := time.Now()
		out, err := onHost(t, "h7", "u7s upgrade node --yes")
		t.Logf("FIGURE %s: u7s upgrade node on h7: %.0f s\n%s", step, time.Since(s).Seconds(), tail(out, 30))
		if err != nil {
			t.Fatalf("u7s upgrade node: %v", err)
		}
		if v := running(t, "h7"); v != to {
			t.Errorf("h7 runs kubelet %s after the upgrade, want %s", v, to)
		}
	})
	stopLoad()
	t.Logf("FIGURE %s: cluster upgraded in %.0f s; %d rounds of requests (one per node), %d requests failed, %d rounds with no node answering; at most %d node(s) cordoned at once",
		step, time.Since(start).Seconds(), rounds, failed, bothFailed, maxCordoned)
	if maxCordoned > 1 {
		t.Errorf("%d nodes were cordoned at once", maxCordoned)
	}
	return ok && t.Run(step+": both nodes at "+to+", kube-system healthy, serving, lock free", func(t *testing.T) {
		nodesReady(t, "h6", 3*time.Minute, upgradeHosts...)
		out := mustKc(t, "h6", "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.nodeInfo.kubeletVersion} {.spec.unschedulable} {.metadata.annotations.u7s\.io/maintenance-request} {.metadata.annotations.u7s\.io/maintenance-approved}{"\n"}{end}`)
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) != 2 || f[1] != to {
				t.Errorf("after the upgrade: %q (want the name and %s only)", l, to)
			}
		}
		eventually(t, "kube-system running", 3*time.Minute, func() error {
			out, err := kc(t, "h6", "get", "pods", "-n", "kube-system", "--no-headers")
			if err != nil {
				return err
			}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if f := strings.Fields(l); len(f) < 3 || f[2] != "Running" || strings.HasPrefix(f[1], "0/") {
					return fmt.Errorf("not running: %s", l)
				}
			}
			return nil
		})
		if holder := mustKc(t, "h6", "-n", "kube-system", "get", "lease", "u7s-maintenance", "-o", "jsonpath={.spec.holderIdentity}"); holder != "" {
			t.Errorf("the maintenance lock is still held by %s", holder)
		}
		for _, h := range upgradeHosts {
			// The worker's kube-proxy and port forwarding have just restarted with its supervisor:
			// the NodePort answers again soon after, not necessarily at once.
			eventually(t, "the Service answers on "+h+" after the upgrade", 2*time.Minute, func() error {
				_, err := run(t, "curl", "-fsS", "--max-time", "5", fmt.Sprintf("http://%s:30082/hostname", ip[h]))
				return err
			})
			rel := mustOnHost(t, h, "readlink /var/lib/u7s/releases/current; ls /var/lib/u7s/releases")
			if !strings.HasPrefix(rel, to+"\n") || !strings.Contains(rel, from) {
				t.Errorf("%s's releases: %q, want current %s and %s kept", h, rel, to, from)
			}
		}
		if out := mustOnHost(t, "h6", "u7s upgrade apply --yes"); !strings.Contains(out, "nothing to do") {
			t.Errorf("a second u7s upgrade apply did something:\n%s", out)
		}
		if out := mustOnHost(t, "h6", "u7s upgrade plan"); !strings.Contains(out, "nothing to upgrade") {
			t.Errorf("the plan after the upgrade:\n%s", out)
		}
	})
}

func semver(t *testing.T, v string) *utilversion.Version {
	t.Helper()
	p, err := utilversion.ParseSemantic(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustRead(t *testing.T, f string) string {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
