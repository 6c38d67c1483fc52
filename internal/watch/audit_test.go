package watch

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

func event(user, ip string, code int32, verb string, ref *auditv1.ObjectReference) string {
	ev := auditv1.Event{Stage: auditv1.StageResponseComplete, Verb: verb, User: authnv1.UserInfo{Username: user},
		SourceIPs: []string{ip}, ObjectRef: ref, ResponseStatus: &metav1.Status{Code: code}}
	b, _ := json.Marshal(ev)
	return string(b) + "\n"
}

func TestAuditFindings(t *testing.T) {
	var log strings.Builder
	for range RefusedBurst {
		log.WriteString(event("mallory", "10.0.0.9", 403, "list", &auditv1.ObjectReference{Resource: "secrets"}))
	}
	log.WriteString(event("alice", "10.0.0.5", 403, "create", &auditv1.ObjectReference{Resource: "configmaps", Namespace: "a"}))
	log.WriteString(event("system:kube-scheduler", "127.0.0.1", 403, "list", &auditv1.ObjectReference{Resource: "pods"}))
	for range RefusedBurst {
		// The cluster's own components while it starts: never critical.
		log.WriteString(event("system:serviceaccount:kube-system:job-controller", "127.0.0.1", 403, "list", nil))
		// A workload's service account probing: a person's.
		log.WriteString(event("system:serviceaccount:shop:web", "10.85.0.7", 403, "list", nil))
	}
	log.WriteString(event("bob", "10.0.0.6", 101, "create", &auditv1.ObjectReference{Resource: "pods", Subresource: "exec", Namespace: "a", Name: "web"}))
	log.WriteString(event("bob", "10.0.0.6", 200, "get", &auditv1.ObjectReference{Resource: "secrets", Namespace: "a", Name: "db"}))
	log.WriteString(event("system:serviceaccount:kube-system:x", "10.0.0.7", 200, "get", &auditv1.ObjectReference{Resource: "secrets", Namespace: "kube-system", Name: "t"}))
	// Not at ResponseComplete: not counted twice.
	ev := auditv1.Event{Stage: auditv1.StageResponseStarted, User: authnv1.UserInfo{Username: "bob"}, ResponseStatus: &metav1.Status{Code: 403}}
	b, _ := json.Marshal(ev)
	log.Write(append(b, '\n'))

	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(log.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	events, pos, err := ReadAudit(path, AuditPosition{})
	if err != nil {
		t.Fatal(err)
	}
	if pos.Offset != int64(log.Len()) || pos.Inode == 0 {
		t.Errorf("position %+v after %d bytes", pos, log.Len())
	}
	got := map[string]Finding{}
	for _, f := range AuditFindings(events) {
		got[f.ID+" "+f.Subject] = f
	}
	want := map[string]Priority{
		"audit-refused mallory from 10.0.0.9":                                           Critical,
		"audit-refused alice from 10.0.0.5":                                             Warning,
		"audit-refused system:kube-scheduler from 127.0.0.1":                            Info,
		"audit-refused system:serviceaccount:kube-system:job-controller from 127.0.0.1": Warning,
		"audit-refused system:serviceaccount:shop:web from 10.85.0.7":                   Critical,
		"audit-exec exec by bob into a/web":                                             Warning,
		"audit-secret-read get by bob: Secret db in a":                                  Info,
	}
	for k, p := range want {
		if f, ok := got[k]; !ok || f.Priority != p {
			t.Errorf("%s: %+v, want priority %s", k, f, p)
		}
	}
	if len(got) != len(want) {
		t.Errorf("findings %v, want only %v", got, want)
	}
	if got["audit-refused mallory from 10.0.0.9"].Count != RefusedBurst {
		t.Errorf("mallory's count: %+v", got["audit-refused mallory from 10.0.0.9"])
	}

	// The next run reads only what was written since, and leaves a half-written line.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprint(f, event("eve", "10.0.0.8", 401, "get", nil), `{"stage":"Resp`)
	f.Close()
	events, pos2, err := ReadAudit(path, pos)
	if err != nil || len(events) != 1 || events[0].User.Username != "eve" {
		t.Fatalf("second run: %v %v", events, err)
	}
	// Rotated: the rest of the old file, then the new one from its start.
	fmt.Fprint(must(os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)), `onseComplete","user":{"username":"trudy"},"responseStatus":{"code":403}}`+"\n")
	if err := os.Rename(path, filepath.Join(filepath.Dir(path), "audit-2026-12-04T19-00-00.000.log")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(event("oscar", "10.0.0.1", 403, "get", nil)), 0o600); err != nil {
		t.Fatal(err)
	}
	events, _, err = ReadAudit(path, pos2)
	if err != nil || len(events) != 2 || events[0].User.Username != "trudy" || events[1].User.Username != "oscar" {
		t.Fatalf("after rotation: %+v %v", events, err)
	}
}

func must(f *os.File, err error) *os.File {
	if err != nil {
		panic(err)
	}
	return f
}
