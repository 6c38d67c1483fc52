//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// checkWatch runs the watch (u7s check all) on control plane cp and worker: no critical finding
// on the cluster as it is, then a burst of refused requests (user of checkUsers, refused in
// namespace users-b) and a file written into a running container's root filesystem on worker
// are found with their identifiers; u7s-watch.service fails on the critical one, which the
// journal and the textfile show.
func checkWatch(t *testing.T, cp, worker, user string) {
	t.Helper()
	for _, h := range []string{cp, worker} {
		if out, err := onHost(t, h, "systemctl is-enabled u7s-watch.timer"); err != nil {
			t.Errorf("u7s-watch.timer is not enabled on %s: %v\n%s", h, err, out)
		}
		out, err := onHost(t, h, "u7s check all --no-journal")
		if err != nil || strings.Contains(out, "critical ") {
			t.Errorf("u7s check all on %s as the cluster is: %v\n%s", h, err, out)
		}
	}

	// Planted: a file written into a running container, a burst of refused requests.
	applyOn(t, cp, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: watched, namespace: default}
spec:
  nodeSelector: {kubernetes.io/hostname: %s}
  containers:
  - {name: c, image: %s, args: [pause]}
`, worker, agnhost))
	mustKc(t, cp, "wait", "--for=condition=Ready", "pod/watched", "--timeout=180s")
	mustKc(t, cp, "exec", "watched", "--", "sh", "-c", "echo planted > /planted-by-test")
	mustOnHost(t, cp, fmt.Sprintf(`for i in $(seq 25); do kubectl --kubeconfig /root/%s.conf -n users-b get secrets >/dev/null 2>&1 || true; done`, user))

	out, err := onHost(t, worker, "u7s check all --json --no-journal")
	if err != nil {
		t.Errorf("u7s check all on %s: %v", worker, err)
	}
	if !strings.Contains(out, `"id": "container-rootfs-write"`) || !strings.Contains(out, "default/watched c") || !strings.Contains(out, "/planted-by-test") {
		t.Errorf("the file written into default/watched is not found on %s:\n%s", worker, out)
	}

	// Through the timer's service, as systemd runs it: failed, in the journal, in the textfile.
	out, err = onHost(t, cp, "systemctl start u7s-watch.service")
	if err == nil {
		t.Errorf("u7s-watch.service did not fail on a critical finding:\n%s", out)
	}
	if out, _ := onHost(t, cp, "systemctl is-failed u7s-watch.service"); strings.TrimSpace(out) != "failed" {
		t.Errorf("u7s-watch.service is %q after a critical finding", out)
	}
	journal := mustOnHost(t, cp, "journalctl -t u7s-watch U7S_FINDING=audit-refused -p crit --no-pager -o cat")
	if !strings.Contains(journal, user+" from ") || !strings.Contains(journal, "403") {
		t.Errorf("the journal does not name %s's refused burst:\n%s", user, journal)
	}
	if exec := mustOnHost(t, cp, "journalctl -t u7s-watch U7S_FINDING=audit-exec --no-pager -o cat"); !strings.Contains(exec, "default/watched") {
		t.Errorf("the journal does not name the exec into default/watched:\n%s", exec)
	}
	prom := mustOnHost(t, cp, "cat /var/lib/u7s/watch/u7s-watch.prom")
	if !strings.Contains(prom, `u7s_watch_findings{id="audit-refused",check="audit",priority="critical"}`) {
		t.Errorf("the textfile lacks the critical audit-refused series:\n%s", prom)
	}
	// The next run reads only what came since: no burst then.
	if out, err := onHost(t, cp, "u7s check all --no-journal"); err != nil {
		t.Errorf("the run after the burst found it again: %v\n%s", err, out)
	}
	mustKc(t, cp, "delete", "pod", "watched", "--wait=false")
}
