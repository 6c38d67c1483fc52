//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The NetworkPolicy checks of TestCluster: a database on the worker h4 in namespace np-db,
// clients in np-app (h2) and np-other (h4, the database's own host, and h3), and outside the
// cluster through the database's NodePort: this machine and h3's host.
const (
	netpolDBPort = 8080
	// The database's NodePort, externalTrafficPolicy Local: only then does a pod see its client's
	// address (Cluster masquerades it, rootful or rootless), so that an ipBlock can apply.
	netpolNodePort = 30082
)

// netpolClients are the client Deployments: namespace/name, and the node each runs on.
var netpolClients = []struct{ ns, name, node string }{
	{"np-app", "client", "h2"},
	{"np-other", "same-host", "h4"},
	{"np-other", "other-host", "h3"},
}

func netpolWorkload() string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: v1
kind: Namespace
metadata: {name: np-db}
---
apiVersion: v1
kind: Namespace
metadata: {name: np-app, labels: {u7s-test: app}}
---
apiVersion: v1
kind: Namespace
metadata: {name: np-other}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: np-db}
spec:
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      nodeSelector: {kubernetes.io/hostname: h4}
      containers:
      - {name: c, image: %s, args: [netexec, --http-port=%d]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: np-db}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: db}
  ports: [{port: 80, targetPort: %d, nodePort: %d}]
`, agnhost, netpolDBPort, netpolDBPort, netpolNodePort)
	for _, c := range netpolClients {
		fmt.Fprintf(&b, `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: %s, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      nodeSelector: {kubernetes.io/hostname: %s}
      # h2 and h3 are control planes. Only their taint: a pod that tolerated every taint would
      # come back to a cordoned node as fast as a drain evicts it.
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
      containers:
      - {name: c, image: %s, command: [sleep, "36000"]}
`, c.name, c.ns, c.name, c.name, c.node, busybox)
	}
	return b.String()
}

// netpolPolicies: default deny into np-db; from there, only pods of namespaces labelled
// u7s-test=app.
func netpolPolicies() string {
	return fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: np-db}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-app, namespace: np-db}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {u7s-test: app}}}]
    ports: [{protocol: TCP, port: %d}]
`, netpolDBPort)
}

// netpolEgress: np-app's pods may reach the database only, then also DNS in kube-system.
const netpolEgressDBOnly = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-db-only, namespace: np-app}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: np-db}}}]
`

const netpolEgressDNS = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-dns, namespace: np-app}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}]
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
`

// netpolFromHosts admits clients of the hosts' network to the database but one, by address.
func netpolFromHosts(cidr, except string) string {
	return fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-hosts, namespace: np-db}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{ipBlock: {cidr: %s, except: [%s]}}]
    ports: [{protocol: TCP, port: %d}]
`, cidr, except, netpolDBPort)
}

// netpol drives the checks from host from (a control plane's kubectl); ip are the hosts'
// addresses.
type netpol struct {
	t    *testing.T
	from string
	ip   map[string]string
}

// nodePort reports whether a client gets the database's answer through its NodePort on h4:
// this machine (client "") with curl, or a host with bash's /dev/tcp (the hosts have no curl).
func (p netpol) nodePort(client string) error {
	addr := net.JoinHostPort(p.ip["h4"], fmt.Sprint(netpolNodePort))
	var out string
	var err error
	if client == "" {
		out, err = run(p.t, "curl", "-sS", "--max-time", "5", "http://"+addr+"/hostname")
	} else {
		out, err = onHost(p.t, client, fmt.Sprintf(`timeout 5 bash -c 'exec 3<>/dev/tcp/%s/%d; printf "GET /hostname HTTP/1.0\r\n\r\n" >&3; cat <&3'`,
			p.ip["h4"], netpolNodePort))
	}
	if err != nil || !strings.Contains(out, "db-") {
		return fmt.Errorf("no answer: %v: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// expectNodePort waits until client gets through the NodePort (want) or is refused (!want).
func (p netpol) expectNodePort(client string, want bool) {
	p.t.Helper()
	who := "this machine"
	if client != "" {
		who = client + "'s host"
	}
	what := who + " reaches the database through its NodePort"
	if !want {
		what = who + " is kept from the database's NodePort"
	}
	p.answers(what, want, func() error { return p.nodePort(client) })
}

// answers waits until reach gets an answer (want) or is refused (!want): policies take effect
// within a sync, not at once.
func (p netpol) answers(what string, want bool, reach func() error) {
	p.t.Helper()
	eventually(p.t, what, 90*time.Second, func() error {
		err := reach()
		switch {
		case want && err != nil:
			return err
		case !want && err == nil:
			return fmt.Errorf("it still answers")
		}
		return nil
	})
}

// exec runs cmd in the running pod of Deployment name in ns.
func (p netpol) exec(ns, name string, cmd ...string) (string, error) {
	out, err := kc(p.t, p.from, "-n", ns, "get", "pods", "-l", "app="+name,
		"--field-selector=status.phase=Running", "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil {
		return out, fmt.Errorf("no running pod of %s/%s: %w", ns, name, err)
	}
	return kc(p.t, p.from, append([]string{"-n", ns, "exec", strings.TrimSpace(out), "--"}, cmd...)...)
}

// reach reports whether client (namespace/name) gets an answer from the database pod.
func (p netpol) reach(ns, name, dbIP string) error {
	out, err := p.exec(ns, name, "sh", "-c", httpGet(dbIP, netpolDBPort))
	if err != nil || !strings.Contains(out, "db-") {
		return fmt.Errorf("no answer: %v: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// expect waits until client reaches the database (want) or is refused (!want).
func (p netpol) expect(ns, name, dbIP string, want bool) {
	p.t.Helper()
	what := fmt.Sprintf("%s/%s reaches the database", ns, name)
	if !want {
		what = fmt.Sprintf("%s/%s is kept from the database", ns, name)
	}
	p.answers(what, want, func() error { return p.reach(ns, name, dbIP) })
}

// rollout waits for the database and the clients to run, and returns the database pod's address
// (of its one pod that runs and is not being deleted).
func (p netpol) rollout() (dbIP string) {
	p.t.Helper()
	for _, d := range append([]struct{ ns, name, node string }{{"np-db", "db", "h4"}}, netpolClients...) {
		if out, err := kc(p.t, p.from, "-n", d.ns, "rollout", "status", "deployment/"+d.name, "--timeout=180s"); err != nil {
			// Why its pod did not come up (a CI run's same-host pod stayed unavailable for 3 min).
			pods, _ := kc(p.t, p.from, "-n", d.ns, "get", "pods", "-o", "wide")
			events, _ := kc(p.t, p.from, "-n", d.ns, "get", "events", "--sort-by=.lastTimestamp")
			p.t.Fatalf("deployment %s/%s not rolled out: %v\n%s\n%s\n%s", d.ns, d.name, err, out, pods, tail(events, 20))
		}
	}
	eventually(p.t, "one database pod runs", 2*time.Minute, func() error {
		out, err := kc(p.t, p.from, "-n", "np-db", "get", "pods", "-l", "app=db", "-o",
			`jsonpath={range .items[*]}{.metadata.deletionTimestamp}|{.status.phase}|{.status.podIP}{"\n"}{end}`)
		if err != nil {
			return err
		}
		var ips []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Split(l, "|"); len(f) == 3 && f[0] == "" && f[1] == "Running" && f[2] != "" {
				ips = append(ips, f[2])
			}
		}
		if len(ips) != 1 {
			return fmt.Errorf("running database pods at %v: %s", ips, out)
		}
		dbIP = ips[0]
		return nil
	})
	return dbIP
}

// dns reports whether np-app's client resolves a cluster name.
func (p netpol) dns() error {
	out, err := p.exec("np-app", "client", "timeout", "8", "nslookup", "kubernetes.default.svc.cluster.local")
	if err != nil || !strings.Contains(out, "Address") || strings.Contains(out, "timed out") {
		return fmt.Errorf("no answer: %v: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// enforced checks the policies as checkNetworkPolicy leaves them; TestCluster checks again after
// a reboot and a restart of the database's node.
func (p netpol) enforced(dbIP string) {
	p.t.Helper()
	p.expect("np-app", "client", dbIP, true)
	p.expect("np-other", "same-host", dbIP, false)
	p.expect("np-other", "other-host", dbIP, false)
	eventually(p.t, "np-app resolves names (egress to DNS allowed)", 90*time.Second, p.dns)
	p.expectNodePort("", true)
	p.expectNodePort("h3", false)
}

// checkNetworkPolicy: every node enforces NetworkPolicy, from the same host and across hosts,
// ingress and egress, pod and namespace selectors.
func checkNetworkPolicy(p netpol) (dbIP string) {
	t := p.t
	for _, h := range []string{"h1", "h2", "h3", "h4"} {
		if out, err := onHost(t, h, "u7s status | grep '^policy:'"); err != nil || !strings.Contains(out, "NetworkPolicy enforced") {
			t.Errorf("u7s status on %s: %v: %s", h, err, out)
		}
	}
	applyOn(t, p.from, netpolWorkload())
	dbIP = p.rollout()

	// Without a policy everyone gets through: the refusals below are the policies' doing.
	for _, c := range netpolClients {
		p.expect(c.ns, c.name, dbIP, true)
	}
	eventually(t, "np-app resolves names before any policy", time.Minute, p.dns)
	p.expectNodePort("", true)
	p.expectNodePort("h3", true)

	start := time.Now()
	applyOn(t, p.from, netpolPolicies())
	p.expect("np-other", "same-host", dbIP, false)
	t.Logf("FIGURE NetworkPolicy: default deny enforced %.0f s after it was created", time.Since(start).Seconds())
	p.expect("np-other", "other-host", dbIP, false)
	p.expect("np-app", "client", dbIP, true)
	// A NodePort client from outside is refused too: the node forwards it from its own address,
	// where every policy engine admits the node's addresses, only if it cannot keep the client's.
	p.expectNodePort("", false)
	p.expectNodePort("h3", false)
	// An ipBlock admits the hosts' network but h3 (ipBlock with except): this machine gets
	// through, h3's host is still refused.
	_, hosts, err := net.ParseCIDR(p.ip["h1"] + "/24")
	if err != nil {
		t.Fatal(err)
	}
	applyOn(t, p.from, netpolFromHosts(hosts.String(), p.ip["h3"]+"/32"))
	p.expectNodePort("", true)
	p.expectNodePort("h3", false)

	applyOn(t, p.from, netpolEgressDBOnly)
	eventually(t, "np-app's DNS is blocked by its egress policy", 90*time.Second, func() error {
		if p.dns() == nil {
			return fmt.Errorf("it still resolves")
		}
		return nil
	})
	p.expect("np-app", "client", dbIP, true)
	applyOn(t, p.from, netpolEgressDNS)
	p.enforced(dbIP)
	return dbIP
}

// upstreamNetpolFocus are the upstream NetworkPolicy specs (e2e.test, Feature:NetworkPolicy)
// TestCluster runs: those of what its own checks do not cover (numbered and named ports, ipBlock
// with except on egress, UDP). Each takes about two minutes here (a matrix of 81 probes, each
// tried again on failure), so the whole feature (44 specs) is `CONFORMANCE_LABELS=
// Feature:NetworkPolicy make conformance` on a cluster, outside make test (README, NetworkPolicy).
var upstreamNetpolFocus = []string{
	`should enforce policy based on Ports`,
	`should allow ingress access on one named port`,
	`should enforce except clause while egress access to server in CIDR block`,
	`should not allow access by TCP when a policy specifies only UDP`,
}

// runUpstreamNetpol runs upstreamNetpolFocus with scripts/conformance.sh against the cluster of
// host (its admin.conf, at the balancer) and fails t with the script's report when a spec fails.
func runUpstreamNetpol(t *testing.T, host string) {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "admin.conf")
	if err := os.WriteFile(kubeconfig, []byte(mustOnHost(t, host, "cat /etc/kubernetes/admin.conf")), 0o600); err != nil {
		t.Fatal(err)
	}
	// The registry the hosts chose (the specification's rules: registry.local names this machine).
	registry := strings.TrimSpace(mustOnHost(t, host, "u7s registry"))
	focus := make([]string, len(upstreamNetpolFocus))
	for i, f := range upstreamNetpolFocus {
		focus[i] = regexp.QuoteMeta(f)
	}
	cmd := exec.Command(filepath.Join(repoRoot(t), "scripts/conformance.sh"))
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "U7S_REGISTRY="+registry,
		"CONFORMANCE_LABELS=Feature:NetworkPolicy && !Feature:SCTPConnectivity",
		"CONFORMANCE_FOCUS="+strings.Join(focus, "|"), "CONFORMANCE_NODES=4",
		// A second attempt for a spec whose resources an overloaded etcd timed out (the run's
		// busiest minutes); ginkgo's summary line in the log counts those that needed it.
		"CONFORMANCE_FLAKE_ATTEMPTS=2")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("upstream's NetworkPolicy specs (%.0f s):\n%s", time.Since(start).Seconds(), out)
	if err != nil {
		t.Errorf("upstream's NetworkPolicy specs: %v", err)
	}
	m := regexp.MustCompile(`conformance: (\d+) passed`).FindSubmatch(out)
	if m == nil {
		t.Fatal("the script printed no report")
	}
	if n, _ := strconv.Atoi(string(m[1])); n < len(upstreamNetpolFocus) {
		t.Errorf("%d specs passed, want %d or more (each focus matches one spec or more)", n, len(upstreamNetpolFocus))
	}
	t.Logf("FIGURE upstream NetworkPolicy specs: %s in %.0f s", m[0], time.Since(start).Seconds())
}
