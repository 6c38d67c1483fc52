//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

const (
	clientNetns = "u7s-e2e-client"
	clientIP    = "10.250.0.2"
)

// clientHost makes another host: a network namespace joined to this one by a veth pair, with
// a route to the node's address only. Removed when the test ends.
func clientHost(t *testing.T, nodeIP string) {
	t.Helper()
	run(t, "ip", "netns", "del", clientNetns)
	run(t, "ip", "link", "del", "u7s-e2e-h")
	for _, c := range [][]string{
		{"ip", "netns", "add", clientNetns},
		{"ip", "link", "add", "u7s-e2e-h", "type", "veth", "peer", "name", "u7s-e2e-c"},
		{"ip", "link", "set", "u7s-e2e-c", "netns", clientNetns},
		{"ip", "addr", "add", "10.250.0.1/30", "dev", "u7s-e2e-h"},
		{"ip", "link", "set", "u7s-e2e-h", "up"},
		{"ip", "netns", "exec", clientNetns, "ip", "addr", "add", clientIP + "/30", "dev", "u7s-e2e-c"},
		{"ip", "netns", "exec", clientNetns, "ip", "link", "set", "u7s-e2e-c", "up"},
		{"ip", "netns", "exec", clientNetns, "ip", "route", "add", nodeIP + "/32", "via", "10.250.0.1"},
	} {
		must(t, c[0], c[1:]...)
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", clientNetns).Run()
		exec.Command("ip", "link", "del", "u7s-e2e-h").Run()
	})
}

// get fetches url from the host itself.
func get(url string) (string, error) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func nodePortService(name string, port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %s}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: e2e-np}
  ports: [{port: 80, targetPort: 8080, nodePort: %d}]
`, name, port)
}

func TestPorts(t *testing.T) {
	if _, err := run(t, u7s, "status"); err != nil {
		initNode(t)
	}
	nodeIP := strings.TrimSpace(kubectl(t, "get", "nodes", "-o", "jsonpath={.items[0].status.addresses[?(@.type=='InternalIP')].address}"))
	clientHost(t, nodeIP)
	run(t, "kubectl", "delete", "deployment/e2e-np", "service/e2e-np", "service/taken", "--ignore-not-found", "--now")
	apply(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: e2e-np}
spec:
  replicas: 1
  selector: {matchLabels: {app: e2e-np}}
  template:
    metadata: {labels: {app: e2e-np}}
    spec:
      containers:
      - {name: c, image: `+agnhost+`, args: [netexec, --http-port=8080]}
`)
	kubectl(t, "rollout", "status", "deployment/e2e-np", "--timeout=120s")
	url := fmt.Sprintf("http://%s:30080/clientip", nodeIP)

	t.Run("NodePort forwarded automatically, client IP kept", func(t *testing.T) {
		start := time.Now()
		apply(t, nodePortService("e2e-np", 30080))
		// Polled finely: the time it takes is a figure (make bench), the bound a sanity check.
		for _, err := get(url); err != nil; _, err = get(url) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("the NodePort did not answer on the host's address within 10s: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("FIGURE nodeport-ready-seconds %.2f (from kubectl apply)", time.Since(start).Seconds())
		// kube-proxy's very first rules for a new Local Service may still masquerade; the
		// steady state must show the client's own address.
		eventually(t, "the pod sees the client's address "+clientIP, 10*time.Second, func() error {
			out, _ := run(t, "ip", "netns", "exec", clientNetns, "curl", "-s", "-m", "3", url)
			if !strings.HasPrefix(out, clientIP+":") {
				return fmt.Errorf("the pod saw the client as %q", out)
			}
			return nil
		})
		if list := must(t, u7s, "ports", "list"); !strings.Contains(list, ":30080/tcp") {
			t.Errorf("u7s ports list lacks 30080:\n%s", list)
		}
	})

	t.Run("a host port already taken: an Event, the node keeps working", func(t *testing.T) {
		l, err := net.Listen("tcp", "0.0.0.0:30081")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		apply(t, nodePortService("taken", 30081))
		eventually(t, "an Event on the Service", 20*time.Second, func() error {
			out, _ := run(t, "kubectl", "get", "events", "--field-selector", "involvedObject.name=taken", "-o", "jsonpath={.items[*].reason}")
			if !strings.Contains(out, "NodePortNotForwarded") {
				return fmt.Errorf("events: %q", out)
			}
			return nil
		})
		if _, err := get(url); err != nil {
			t.Errorf("the other NodePort stopped answering: %v", err)
		}
		must(t, u7s, "status")
		kubectl(t, "delete", "service", "taken")
	})

	t.Run("deleting the Service closes the port", func(t *testing.T) {
		kubectl(t, "delete", "service", "e2e-np")
		eventually(t, "port 30080 closed", 10*time.Second, func() error {
			if _, err := net.DialTimeout("tcp", nodeIP+":30080", time.Second); err == nil {
				return fmt.Errorf("still open")
			}
			return nil
		})
	})

	t.Run("forwards come back after the supervisor restarts", func(t *testing.T) {
		apply(t, nodePortService("e2e-np", 30080))
		eventually(t, "the NodePort answers", 10*time.Second, func() error { _, err := get(url); return err })
		must(t, u7s, "stop")
		must(t, u7s, "start")
		eventually(t, "the NodePort answers again after the restart", 180*time.Second, func() error { _, err := get(url); return err })
	})

	t.Run("u7s ports add, list, remove and bad specs", func(t *testing.T) {
		must(t, u7s, "ports", "add", "0.0.0.0:18080:10.0.2.100:30080/tcp")
		if list := must(t, u7s, "ports", "list", "-o", "json"); !strings.Contains(list, `"parentPort": 18080`) {
			t.Errorf("list -o json lacks 18080:\n%s", list)
		}
		eventually(t, "the manual forward answers", 10*time.Second, func() error {
			_, err := get(fmt.Sprintf("http://%s:18080/clientip", nodeIP))
			return err
		})
		must(t, u7s, "ports", "remove", "0.0.0.0:18080:10.0.2.100:30080/tcp")
		if list := must(t, u7s, "ports", "list"); strings.Contains(list, "18080") {
			t.Errorf("18080 still listed after remove:\n%s", list)
		}
		for spec, want := range map[string]string{
			"0.0.0.0:0:80/tcp":      "out of range",
			"0.0.0.0:70000:80/tcp":  "out of range",
			"0.0.0.0:18081:80/sctp": "unknown protocol",
			"garbage":               "no /proto",
			"0.0.0.0:6443:6443/tcp": "already forwarded",
			"0.0.0.0:81:80/tcp":     "net.ipv4.ip_unprivileged_port_start", // where the host keeps the default 1024
		} {
			out, err := run(t, u7s, "ports", "add", spec)
			if err == nil || !strings.Contains(out, want) {
				t.Errorf("ports add %s: want an error with %q, got %v: %s", spec, want, err, out)
			}
		}
	})
	t.Run("u7s ports as u7s-admin", func(t *testing.T) {
		asAdmin := []string{"--reuid=u7s-admin", "--regid=u7s-admin", "--clear-groups", u7s, "ports"}
		must(t, "setpriv", append(asAdmin, "add", "0.0.0.0:18082:10.0.2.100:30080/tcp")...)
		if list := must(t, "setpriv", append(asAdmin, "list")...); !strings.Contains(list, "18082") {
			t.Errorf("u7s-admin's list lacks its forward:\n%s", list)
		}
		must(t, "setpriv", append(asAdmin, "remove", "0.0.0.0:18082:10.0.2.100:30080/tcp")...)
	})
	kubectl(t, "delete", "service", "e2e-np", "--ignore-not-found")
	kubectl(t, "delete", "deployment", "e2e-np")
}
