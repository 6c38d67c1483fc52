//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/u7s/u7s/internal/crio"
	"github.com/u7s/u7s/internal/version"
)

// checkWatch runs the watch (u7s check all) on control plane cp and worker: no critical finding
// on the cluster as it is, then a burst of refused requests (user of checkUsers, refused in
// namespace users-b), a file written into a running container's root filesystem, a loosened
// policy.json and an unsigned image run through it on worker are found with their
// identifiers; u7s-watch.service fails on the critical one, which the journal and the textfile
// show; the node is clean again once the policy is restored and the image removed.
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
	// The exec and the burst at cp's own API server: each control plane's watch reads its own
	// API server's audit log, and through the balancer the 25 were spread over three (9 on the
	// one asked, a warning) and the exec logged by whichever one served it.
	cpIP, err := hostsCmd(t, "", "ip", cp)
	if err != nil {
		t.Fatalf("%v: %s", err, cpIP)
	}
	server := "https://" + strings.TrimSpace(cpIP) + ":6443"
	mustKc(t, cp, "--server", server, "exec", "watched", "--", "sh", "-c", "echo planted > /planted-by-test")
	mustOnHost(t, cp, fmt.Sprintf(`for i in $(seq 25); do kubectl --kubeconfig /root/%s.conf --server %s -n users-b get secrets >/dev/null 2>&1 || true; done`, user, server))

	// Planted on worker: its signature policy loosened by hand, and an unsigned image pulled
	// through it.
	policy := crio.DefaultDirs().PolicyFile()
	mustOnHost(t, worker, fmt.Sprintf(`cp -p %[1]s /root/policy.json.bak && echo '{"default":[{"type":"insecureAcceptAnything"}]}' > %[1]s`, policy))
	// An image no earlier subtest ran on worker: a copy of one the node already holds (busybox)
	// is the same image in its storage, signed under its first name, and rightly not a finding.
	unsigned := "registry.local/e2e-watch/nonroot:" + version.Pinned.NonrootTag
	must(t, "skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--remove-signatures", "docker://"+testImage(t, "nonroot"), "docker://"+unsigned)
	applyOn(t, cp, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: unsigned, namespace: default}
spec:
  nodeSelector: {kubernetes.io/hostname: %s}
  containers:
  - {name: c, image: %s, command: [sleep, "3600"]}
`, worker, unsigned))
	mustKc(t, cp, "wait", "--for=condition=Ready", "pod/unsigned", "--timeout=180s")

	out, err := onHost(t, worker, "u7s check all --json --no-journal")
	if err == nil {
		t.Errorf("u7s check all on %s succeeded with critical findings planted", worker)
	}
	found := watchFindings(t, out)
	for _, want := range []struct{ id, subject string }{
		{"container-rootfs-write", "default/watched c"},
		{"drift-file-changed", policy},
		{"image-unsigned", unsigned},
	} {
		if !slices.ContainsFunc(found, func(f finding) bool { return f.ID == want.id && strings.Contains(f.Subject, want.subject) }) {
			t.Errorf("u7s check all on %s does not find %s about %s:\n%s", worker, want.id, want.subject, out)
		}
	}
	if !strings.Contains(out, "/planted-by-test") {
		t.Errorf("the file written into default/watched is not named on %s:\n%s", worker, out)
	}
	mustOnHost(t, worker, fmt.Sprintf("cp /root/policy.json.bak %s && rm /root/policy.json.bak", policy))
	mustKc(t, cp, "delete", "pod", "unsigned", "watched", "--timeout=120s")
	// The kubelet removes a deleted pod's containers at its next garbage collection (a minute):
	// until then cri-o refuses to remove their image.
	if out, err := onHost(t, worker, `for i in $(seq 24); do out=$(u7s check all --remove-unsigned-images 2>&1) && break; sleep 5; done; echo "$out"`); err != nil || !strings.Contains(out, "removed 1 unsigned image(s)") {
		t.Errorf("u7s check all --remove-unsigned-images on %s: %v\n%s", worker, err, out)
	}
	if out, err := onHost(t, worker, "u7s check all --no-journal"); err != nil || strings.Contains(out, "critical ") {
		t.Errorf("u7s check all on %s after the policy was restored and the image removed: %v\n%s", worker, err, out)
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
}

// finding is what the e2e tests read of u7s check all --json's findings.
type finding struct{ ID, Priority, Subject string }

// watchFindings reads u7s check all --json's findings from out (stderr's progress around it).
func watchFindings(t *testing.T, out string) []finding {
	t.Helper()
	i := strings.Index(out, "{\n")
	if i < 0 {
		t.Errorf("no JSON in u7s check all's output:\n%s", out)
		return nil
	}
	var r struct{ Findings []finding }
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&r); err != nil {
		t.Errorf("u7s check all's JSON: %v\n%s", err, out)
	}
	return r.Findings
}
