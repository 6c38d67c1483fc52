//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// balancerHosts are the specification's fault-tolerant balancers: fresh Debian hosts (nothing
// of u7s) with Debian's haproxy and keepalived, configured by what u7s balancer config prints.
var balancerHosts = []string{"b1", "b2"}

// vip is the balancers' virtual IP: on the hosts' bridge (172.31.77.0/24, whose hosts get
// addresses from .11 upwards), far above any the test's hosts get.
const vip = "172.31.77.250"

// balancerIface is a host's interface on the bridge (systemd-nspawn's --network-bridge).
const balancerIface = "host0"

// upBalancers boots the balancer hosts and installs haproxy and keepalived on them, as a user
// does on a new Debian host (with procps, whose /bin/kill their units reload with: a minimal
// debootstrap lacks it, a Debian install has it); top removes them at its end.
func upBalancers(t, top *testing.T) {
	t.Helper()
	if out, err := hostsCmd(t, "", append([]string{"up", "--fresh"}, balancerHosts...)...); err != nil {
		t.Fatalf("hosts.sh up --fresh %s: %v\n%s", strings.Join(balancerHosts, " "), err, out)
	}
	top.Cleanup(func() {
		if top.Failed() && os.Getenv("U7S_E2E_KEEP") != "" {
			return
		}
		_, _ = hostsCmd(t, "", append([]string{"down"}, balancerHosts...)...)
	})
	var wg sync.WaitGroup
	errs := make([]error, len(balancerHosts))
	for i, b := range balancerHosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := onHost(t, b, "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends haproxy keepalived procps >/dev/null")
			if err != nil {
				errs[i] = fmt.Errorf("installing haproxy and keepalived on %s: %v\n%s", b, err, tail(out, 20))
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// balancerConfig runs u7s balancer config with args on a control plane: its output alone
// (progress goes to stderr, shown only when it fails).
func balancerConfig(t *testing.T, host, args string) string {
	t.Helper()
	return mustOnHost(t, host, "u7s balancer config "+args+" >/root/balancer.out 2>/root/balancer.err || { cat /root/balancer.err; exit 1; }; cat /root/balancer.out")
}

// installBalancer writes a balancer host's configuration and has the service load it.
func installBalancer(t *testing.T, host, file, content, service string) {
	t.Helper()
	if out, err := hostsCmd(t, content, "exec", host, "--", "sh", "-c", "cat > "+file+".new && mv "+file+".new "+file+" && systemctl reload-or-restart "+service); err != nil {
		t.Fatalf("%s on %s: %v\n%s", file, host, err, out)
	}
}

// vipHolder is the balancer holding the VIP, waiting until exactly one does.
func vipHolder(t *testing.T, hosts []string) string {
	t.Helper()
	var holder string
	eventually(t, "one balancer holds the VIP", 2*time.Minute, func() error {
		var holders []string
		for _, b := range hosts {
			out, err := onHost(t, b, "ip -4 -o addr show dev "+balancerIface)
			if err != nil {
				return fmt.Errorf("%s: %v: %s", b, err, out)
			}
			if strings.Contains(out, " "+vip+"/") {
				holders = append(holders, b)
			}
		}
		if len(holders) != 1 {
			return fmt.Errorf("held by %v", holders)
		}
		holder = holders[0]
		return nil
	})
	return holder
}

// apiAtVIP asks an API server through the VIP with a control plane's admin credentials,
// checking the server's certificate against the cluster's endpoint name (the VIP is not in it:
// in the test the cluster's endpoint is this machine's haproxy). It asks for /version, which
// an API server answers without etcd: what is checked is the way through the balancers, not
// etcd's health, which a loaded machine's readiness checks report as failing at times.
func apiAtVIP(t *testing.T, cp, endpointHost string) error {
	t.Helper()
	out, err := onHost(t, cp, fmt.Sprintf("kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://%s:%d --tls-server-name %s --request-timeout 10s get --raw /version", vip, balancerPort, endpointHost))
	if err != nil || !strings.Contains(out, `"gitVersion"`) {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
	}
	return nil
}

// checkBalancers is the specification's balancer layout: haproxy and keepalived on the two hosts
// from what u7s balancer config prints on a control plane, the API at their VIP, and again
// after the VIP's holder is powered off. It returns the balancer still running.
func checkBalancers(t *testing.T, cp string, controlPlanes map[string]string, workers []string, endpointHost string) string {
	cfg := balancerConfig(t, cp, "")
	for name, addr := range controlPlanes {
		if !strings.Contains(cfg, fmt.Sprintf("server %s %s:6443 check", name, addr)) {
			t.Errorf("haproxy.cfg from u7s balancer config has no control plane %s at %s:\n%s", name, addr, cfg)
		}
	}
	for _, w := range workers {
		if strings.Contains(cfg, "server "+w+" ") {
			t.Errorf("haproxy.cfg balances the API over the worker %s:\n%s", w, cfg)
		}
	}
	for i, b := range balancerHosts {
		installBalancer(t, b, "/etc/haproxy/haproxy.cfg", cfg, "haproxy")
		ka := balancerConfig(t, cp, fmt.Sprintf("--keepalived --vip %s --interface %s --priority %d", vip, balancerIface, 101-i))
		installBalancer(t, b, "/etc/keepalived/keepalived.conf", ka, "keepalived")
	}
	holder := vipHolder(t, balancerHosts)
	eventually(t, "the API at the VIP", 3*time.Minute, func() error { return apiAtVIP(t, cp, endpointHost) })

	down := time.Now()
	if out, err := hostsCmd(t, "", "poweroff", holder); err != nil {
		t.Fatalf("poweroff %s: %v\n%s", holder, err, out)
	}
	var rest []string
	for _, b := range balancerHosts {
		if b != holder {
			rest = append(rest, b)
		}
	}
	eventually(t, "the API at the VIP with its holder off", 3*time.Minute, func() error { return apiAtVIP(t, cp, endpointHost) })
	t.Logf("FIGURE the API at the VIP again after its holder (%s) powered off: %.1f s", holder, time.Since(down).Seconds())
	if h := vipHolder(t, rest); h != rest[0] {
		t.Errorf("the VIP is on %s", h)
	}
	return rest[0]
}

// balancerFollows checks that a new haproxy.cfg from u7s balancer config names exactly the
// cluster's control planes now, installs it on the running balancer and asks the API at the VIP.
func balancerFollows(t *testing.T, lb, cp string, want, gone []string, endpointHost string) {
	t.Helper()
	var cfg string
	eventually(t, "haproxy.cfg following the cluster's control planes", 2*time.Minute, func() error {
		cfg = balancerConfig(t, cp, "")
		for _, h := range want {
			if !strings.Contains(cfg, "server "+h+" ") {
				return fmt.Errorf("no server %s in:\n%s", h, cfg)
			}
		}
		for _, h := range gone {
			if strings.Contains(cfg, "server "+h+" ") {
				return fmt.Errorf("server %s still in:\n%s", h, cfg)
			}
		}
		return nil
	})
	installBalancer(t, lb, "/etc/haproxy/haproxy.cfg", cfg, "haproxy")
	eventually(t, "the API at the VIP with the new haproxy.cfg", 3*time.Minute, func() error { return apiAtVIP(t, cp, endpointHost) })
}
