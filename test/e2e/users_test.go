//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// checkUsers makes two cluster users on control plane from and checks what they may do, through
// the balancer (their kubeconfigs' server) and at another control plane (other), that the audit
// log of the control planes names them, and that unbinding and removing take access away.
func checkUsers(t *testing.T, from, other string, controlPlanes []string, ip map[string]string) {
	t.Helper()
	as := func(user string, args ...string) (string, error) {
		return onHost(t, from, fmt.Sprintf("kubectl --kubeconfig /root/%s.conf %s", user, shellQuote(args)))
	}
	mustOnHost(t, from, "u7s user add alice --kubeconfig /root/alice.conf && u7s user add bob --group developers --kubeconfig /root/bob.conf")
	if mode := strings.TrimSpace(mustOnHost(t, from, "stat -c %a /root/alice.conf")); mode != "600" {
		t.Errorf("alice's kubeconfig has mode %s, want 600", mode)
	}
	// Refused before anything changes: a group that would be cluster-admin for good, a binding
	// of a user no one added.
	if out, err := onHost(t, from, "u7s user add mallory --group system:masters --kubeconfig /root/mallory.conf"); err == nil || !strings.Contains(out, "system:masters") {
		t.Errorf("u7s user add with group system:masters: %v\n%s", err, out)
	}
	if out, err := onHost(t, from, "test ! -e /root/mallory.conf && ! KUBECONFIG=/etc/kubernetes/admin.conf kubectl get csr -o name | grep mallory"); err != nil {
		t.Errorf("the refused add left something: %v\n%s", err, out)
	}
	if out, err := onHost(t, from, "u7s user bind nobody view"); err == nil || !strings.Contains(out, "u7s user add nobody") {
		t.Errorf("binding a user never added: %v\n%s", err, out)
	}

	mustKc(t, from, "create", "namespace", "users-a")
	mustKc(t, from, "create", "namespace", "users-b")
	mustOnHost(t, from, "u7s user bind alice view --namespace users-a && u7s user bind bob edit")
	if out := mustOnHost(t, from, "kubectl --kubeconfig /root/alice.conf auth whoami -o jsonpath='{.status.userInfo.username}'"); strings.TrimSpace(out) != "alice" {
		t.Errorf("alice's kubeconfig authenticates as %q", out)
	}
	if _, err := as("alice", "-n", "users-a", "get", "pods"); err != nil {
		t.Errorf("alice cannot read pods in users-a: %v", err)
	}
	// The same kubeconfig at another control plane than the balancer chose.
	if out, err := as("alice", "--server", "https://"+ip[other]+":6443", "-n", "users-a", "get", "configmaps"); err != nil {
		t.Errorf("alice at %s's API server: %v\n%s", other, err, out)
	}
	if out, err := as("alice", "-n", "users-b", "get", "pods"); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("alice reads pods in users-b: %v\n%s", err, out)
	}
	if out, err := as("alice", "-n", "users-a", "create", "configmap", "by-alice"); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("alice writes in users-a: %v\n%s", err, out)
	}
	if out, err := as("bob", "-n", "users-b", "create", "configmap", "by-bob"); err != nil {
		t.Errorf("bob cannot write in users-b: %v\n%s", err, out)
	}
	list := mustOnHost(t, other, "u7s user list")
	for _, want := range []string{"alice", "view in users-a", "bob", "developers", "edit (cluster-wide)", "u7s user unbind alice view --namespace users-a"} {
		if !strings.Contains(list, want) {
			t.Errorf("u7s user list on %s does not show %q:\n%s", other, want, list)
		}
	}
	eventually(t, "the audit log names alice and bob", time.Minute, func() error {
		for _, u := range []string{"alice", "bob"} {
			found := false
			for _, cp := range controlPlanes {
				if _, err := onHost(t, cp, fmt.Sprintf(`grep -q '"username":"%s"' /var/log/u7s/audit/audit.log`, u)); err == nil {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("no request of %s in the control planes' audit logs", u)
			}
		}
		return nil
	})

	mustOnHost(t, from, "u7s user unbind alice view --namespace users-a")
	eventually(t, "alice refused after unbind", time.Minute, func() error {
		if out, err := as("alice", "-n", "users-a", "get", "pods"); err == nil || !strings.Contains(out, "forbidden") {
			return fmt.Errorf("alice still reads pods: %v %s", err, out)
		}
		return nil
	})
	out := mustOnHost(t, from, "u7s user remove bob")
	if !strings.Contains(out, "edit (cluster-wide) unbound") || !strings.Contains(out, "valid until") {
		t.Errorf("u7s user remove bob:\n%s", out)
	}
	eventually(t, "bob refused after remove", time.Minute, func() error {
		if out, err := as("bob", "-n", "users-b", "create", "configmap", "by-bob-2"); err == nil || !strings.Contains(out, "forbidden") {
			return fmt.Errorf("bob still writes: %v %s", err, out)
		}
		return nil
	})
	if list := mustOnHost(t, from, "u7s user list"); strings.Contains(list, "bob") || !strings.Contains(list, "alice") {
		t.Errorf("u7s user list after removing bob:\n%s", list)
	}
}
