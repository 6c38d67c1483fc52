package cis

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// kube-bench's check states (kube-bench/check).
const (
	Pass = "PASS"
	Fail = "FAIL"
	Warn = "WARN"
	Info = "INFO"
)

// Result is what `kube-bench run --json` prints: one Controls per target, and the totals.
type Result struct {
	Controls []Controls `json:"Controls"`
	Totals   Summary    `json:"Totals"`
}

// Controls is one target's (master, node, ...) results.
type Controls struct {
	ID       string  `json:"id"`
	Version  string  `json:"version"`
	Text     string  `json:"text"`
	NodeType string  `json:"node_type"`
	Groups   []Group `json:"tests"`
	Summary
}

// Group is a section of the benchmark (1.1, 4.2, ...).
type Group struct {
	Section string        `json:"section"`
	Desc    string        `json:"desc"`
	Checks  []CheckResult `json:"results"`
}

// CheckResult is one check's outcome.
type CheckResult struct {
	ID             string `json:"test_number"`
	Text           string `json:"test_desc"`
	Type           string `json:"type"`
	Status         string `json:"status"`
	Scored         bool   `json:"scored"`
	Remediation    string `json:"remediation"`
	Reason         string `json:"reason,omitempty"`
	ActualValue    string `json:"actual_value"`
	ExpectedResult string `json:"expected_result"`
}

// Summary is kube-bench's count of states.
type Summary struct {
	Pass int `json:"total_pass"`
	Fail int `json:"total_fail"`
	Warn int `json:"total_warn"`
	Info int `json:"total_info"`
}

// ParseResult reads kube-bench's JSON.
func ParseResult(b []byte) (*Result, error) {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("kube-bench's JSON: %w", err)
	}
	if len(r.Controls) == 0 {
		return nil, fmt.Errorf("kube-bench's JSON has no results")
	}
	return &r, nil
}

// Counts are the checks run and their outcomes; NotApplicable are kube-bench's INFO, the
// checks the profile skips.
type Counts struct {
	Run, Pass, Fail, Warn, NotApplicable, Other int
}

// Checks are every check of the result, in kube-bench's order.
func (r *Result) Checks() []CheckResult {
	var all []CheckResult
	for _, c := range r.Controls {
		for _, g := range c.Groups {
			all = append(all, g.Checks...)
		}
	}
	return all
}

// Count counts the checks by state.
func (r *Result) Count() Counts {
	var n Counts
	for _, c := range r.Checks() {
		n.Run++
		switch c.Status {
		case Pass:
			n.Pass++
		case Fail:
			n.Fail++
		case Warn:
			n.Warn++
		case Info:
			n.NotApplicable++
		default:
			n.Other++
		}
	}
	return n
}

// With are the checks in state s.
func (r *Result) With(s string) []CheckResult {
	var out []CheckResult
	for _, c := range r.Checks() {
		if c.Status == s {
			out = append(out, c)
		}
	}
	return out
}

// FailedIDs are the IDs of the checks that failed.
func (r *Result) FailedIDs() []string {
	var ids []string
	for _, c := range r.With(Fail) {
		ids = append(ids, c.ID)
	}
	return ids
}

// WriteReport prints every FAIL and WARN with its ID and text (a FAIL with what was found and
// what was expected), the not applicable ones with their reason, then the totals.
func WriteReport(w io.Writer, r *Result) {
	for _, c := range r.Controls {
		fmt.Fprintf(w, "== %s %s (%s) ==\n", c.ID, c.Text, c.Version)
		for _, g := range c.Groups {
			for _, k := range g.Checks {
				switch k.Status {
				case Fail, Warn:
					fmt.Fprintf(w, "[%s] %s %s\n", k.Status, k.ID, k.Text)
					if k.Status == Fail {
						// A process's whole command line (or every process's) is no help here.
						if v := oneLine(k.ActualValue); v != "" && len(v) <= maxValue {
							fmt.Fprintf(w, "       found:    %s\n", v)
						}
						if v := oneLine(k.ExpectedResult); v != "" {
							fmt.Fprintf(w, "       expected: %s\n", v)
						}
					}
				case Info:
					fmt.Fprintf(w, "[N/A]  %s %s\n", k.ID, k.Text)
					for _, l := range wrap(oneLine(k.Remediation), 90) {
						fmt.Fprintf(w, "       %s\n", l)
					}
				}
			}
		}
	}
	n := r.Count()
	fmt.Fprintf(w, "\n%d checks run: %d PASS, %d FAIL, %d WARN, %d not applicable", n.Run, n.Pass, n.Fail, n.Warn, n.NotApplicable)
	if n.Other > 0 {
		fmt.Fprintf(w, ", %d in another state", n.Other)
	}
	fmt.Fprintln(w)
}

// maxValue is the longest found value the report prints (--json has them all).
const maxValue = 200

// oneLine joins a multi-line value into one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// wrap breaks s into lines of at most width characters, at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
