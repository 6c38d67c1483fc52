package watch

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// RefusedBurst is how many refused requests (401, 403) of one user from one address in one run
// make a critical finding rather than a warning: a guessed credential, a scan, or a workload
// whose rights were taken away and which keeps trying.
const RefusedBurst = 20

// AuditPosition is where the last run stopped reading the audit log: the file (by inode, as the
// API server rotates it under another name) and the offset in it.
type AuditPosition struct {
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// ReadAudit returns the events the API server wrote to path since pos and the position after
// them. A log rotated since pos is read to its end first (found by inode in path's directory).
// The first run (pos zero) reads the whole log.
func ReadAudit(path string, pos AuditPosition) ([]auditv1.Event, AuditPosition, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, pos, nil // a worker: no API server, no audit log
	}
	if err != nil {
		return nil, pos, err
	}
	ino := inode(fi)
	var events []auditv1.Event
	start := pos.Offset
	if pos.Inode != 0 && pos.Inode != ino {
		if old := findInode(filepath.Dir(path), pos.Inode); old != "" {
			evs, _, err := readFrom(old, pos.Offset)
			if err != nil {
				return nil, pos, err
			}
			events = evs
		}
		start = 0
	}
	if start > fi.Size() { // truncated
		start = 0
	}
	evs, end, err := readFrom(path, start)
	if err != nil {
		return nil, pos, err
	}
	return append(events, evs...), AuditPosition{Inode: ino, Offset: end}, nil
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

func findInode(dir string, ino uint64) string {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && inode(fi) == ino {
			return filepath.Join(dir, e.Name())
		}
	}
	return ""
}

// readFrom parses the complete lines of path from offset; a last line still being written is
// left for the next run.
func readFrom(path string, offset int64) ([]auditv1.Event, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, offset, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, offset, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var events []auditv1.Event
	pos := offset
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return events, pos, nil // an incomplete last line waits for the next run
		}
		if err != nil {
			return events, pos, err
		}
		pos += int64(len(line))
		var ev auditv1.Event
		if json.Unmarshal(line, &ev) == nil {
			events = append(events, ev)
		}
	}
}

// systemUser says whether an event's user is the cluster's own: nodes, service accounts,
// controllers, bootstrap tokens.
func systemUser(name string) bool { return strings.HasPrefix(name, "system:") }

// component says whether a user is one of the cluster's components (nodes, the control plane,
// kube-system's service accounts), which are refused now and then while the cluster starts;
// the service accounts of other namespaces are workloads, whose refusals count as people's.
func component(name string) bool {
	if sa, ok := strings.CutPrefix(name, "system:serviceaccount:"); ok {
		return strings.HasPrefix(sa, "kube-system:")
	}
	return systemUser(name)
}

func userOf(ev *auditv1.Event) string {
	if ev.User.Username == "" {
		return "(none)"
	}
	return ev.User.Username
}

func sourceOf(ev *auditv1.Event) string {
	if len(ev.SourceIPs) == 0 {
		return "(unknown)"
	}
	return ev.SourceIPs[0]
}

// AuditFindings are what the events say: refused requests by user and address, exec, attach and
// port-forward into pods, and Secrets read by people (not the cluster's own users).
func AuditFindings(events []auditv1.Event) []Finding {
	type count struct {
		n     int
		codes map[int32]int
	}
	refused := map[string]*count{}
	execs := map[string]int{}
	secrets := map[string]int{}
	for i := range events {
		ev := &events[i]
		if ev.Stage != auditv1.StageResponseComplete && ev.Stage != auditv1.StagePanic {
			continue
		}
		code := int32(0)
		if ev.ResponseStatus != nil {
			code = ev.ResponseStatus.Code
		}
		user := userOf(ev)
		if code == 401 || code == 403 {
			k := user + " from " + sourceOf(ev)
			c := refused[k]
			if c == nil {
				c = &count{codes: map[int32]int{}}
				refused[k] = c
			}
			c.n++
			c.codes[code]++
			continue
		}
		if code >= 400 || ev.ObjectRef == nil || systemUser(user) {
			continue
		}
		o := ev.ObjectRef
		switch {
		case o.Resource == "pods" && (o.Subresource == "exec" || o.Subresource == "attach" || o.Subresource == "portforward"):
			execs[fmt.Sprintf("%s by %s into %s/%s", o.Subresource, user, o.Namespace, o.Name)]++
		case o.Resource == "secrets" && o.Subresource == "" && (ev.Verb == "get" || ev.Verb == "list" || ev.Verb == "watch"):
			what := "every Secret"
			if o.Name != "" {
				what = "Secret " + o.Name
			}
			if o.Namespace != "" {
				what += " in " + o.Namespace
			}
			secrets[fmt.Sprintf("%s by %s: %s", ev.Verb, user, what)]++
		}
	}
	var fs []Finding
	for _, k := range sortedKeys(refused) {
		c := refused[k]
		p := Warning
		switch comp := component(strings.SplitN(k, " ", 2)[0]); {
		case comp && c.n < RefusedBurst:
			p = Info
		case comp:
			p = Warning
		case c.n >= RefusedBurst:
			p = Critical
		}
		fs = append(fs, Finding{ID: "audit-refused", Priority: p, Check: "audit", Subject: k, Count: c.n,
			Message: fmt.Sprintf("%d requests refused (%s) for %s", c.n, codes(c.codes), k),
			Fix:     "find who uses these credentials; a burst of refusals is a guess or a workload whose rights were taken"})
	}
	for _, k := range sortedKeys(execs) {
		fs = append(fs, Finding{ID: "audit-exec", Priority: Warning, Check: "audit", Subject: k, Count: execs[k],
			Message: fmt.Sprintf("%d× %s", execs[k], k)})
	}
	for _, k := range sortedKeys(secrets) {
		fs = append(fs, Finding{ID: "audit-secret-read", Priority: Info, Check: "audit", Subject: k, Count: secrets[k],
			Message: fmt.Sprintf("%d× %s", secrets[k], k)})
	}
	return fs
}

func codes(m map[int32]int) string {
	var parts []string
	for c, n := range m {
		parts = append(parts, fmt.Sprintf("%d× %d", n, c))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
