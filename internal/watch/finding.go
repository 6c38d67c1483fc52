// Package watch is podsec-inotify's job done by u7s: `u7s check all`, run by u7s-watch.timer,
// looks again at a node after init (the CIS benchmark, the API server's audit log since the last
// run, writes into running containers' root filesystems) and reports findings to the journal,
// as JSON and as a Prometheus textfile.
package watch

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"
)

// Priority is how urgent a finding is; Critical fails u7s-watch.service.
type Priority string

const (
	Critical Priority = "critical"
	Warning  Priority = "warning"
	Info     Priority = "info"
)

func (p Priority) journal() journal.Priority {
	switch p {
	case Critical:
		return journal.PriCrit
	case Warning:
		return journal.PriWarning
	}
	return journal.PriInfo
}

func (p Priority) rank() int {
	switch p {
	case Critical:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// Finding is one thing a check found. ID is stable (the journal's U7S_FINDING field, the
// textfile's label, what a monitoring rule matches); Subject is what it is about (a user and
// address, a container), so that the same problem found again has the same ID and Subject.
type Finding struct {
	ID       string   `json:"id"`
	Priority Priority `json:"priority"`
	Check    string   `json:"check"`
	Subject  string   `json:"subject,omitempty"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix,omitempty"`
	Count    int      `json:"count,omitempty"`
}

func (f Finding) String() string {
	s := fmt.Sprintf("%-8s %s: %s", f.Priority, f.ID, f.Message)
	if f.Fix != "" {
		s += " (fix: " + f.Fix + ")"
	}
	return s
}

// Sort orders findings by priority, then ID and subject.
func Sort(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Priority.rank() != b.Priority.rank() {
			return a.Priority.rank() < b.Priority.rank()
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Subject < b.Subject
	})
}

// AnyCritical says whether one finding is critical.
func AnyCritical(fs []Finding) bool {
	for _, f := range fs {
		if f.Priority == Critical {
			return true
		}
	}
	return false
}

// ToJournal sends each finding to the journal with its priority and fields a query can select
// (journalctl U7S_FINDING=ID).
func ToJournal(fs []Finding) error {
	if !journal.Enabled() {
		return nil
	}
	for _, f := range fs {
		if err := journal.Send(f.String(), f.Priority.journal(), map[string]string{
			"SYSLOG_IDENTIFIER": "u7s-watch",
			"U7S_FINDING":       f.ID,
			"U7S_CHECK":         f.Check,
			"U7S_SUBJECT":       f.Subject,
			"U7S_PRIORITY":      string(f.Priority),
		}); err != nil {
			return fmt.Errorf("writing to the journal: %w", err)
		}
	}
	return nil
}

// Textfile writes the findings in Prometheus' exposition format, for a node exporter's textfile
// collector: one series per ID and priority, and whether the run itself completed.
func Textfile(w io.Writer, fs []Finding, checksRun []string, failed map[string]error) error {
	type key struct{ id, check string }
	type val struct {
		p Priority
		n int
	}
	counts := map[key]val{}
	for _, f := range fs {
		k := key{f.ID, f.Check}
		v := counts[k]
		v.p = f.Priority
		v.n += max(f.Count, 1)
		counts[k] = v
	}
	keys := make([]key, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].id < keys[j].id })
	var b strings.Builder
	b.WriteString("# HELP u7s_watch_findings Findings of u7s check all's last run, by identifier.\n# TYPE u7s_watch_findings gauge\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "u7s_watch_findings{id=%q,check=%q,priority=%q} %d\n", k.id, k.check, counts[k].p, counts[k].n)
	}
	b.WriteString("# HELP u7s_watch_check_ok Whether each check of the last run completed (1) or failed to run (0).\n# TYPE u7s_watch_check_ok gauge\n")
	for _, c := range checksRun {
		ok := 1
		if failed[c] != nil {
			ok = 0
		}
		fmt.Fprintf(&b, "u7s_watch_check_ok{check=%q} %d\n", c, ok)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
