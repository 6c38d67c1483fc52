package cis

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
)

func sample(t *testing.T) *Result {
	t.Helper()
	b, err := os.ReadFile("testdata/result.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseResult(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCount(t *testing.T) {
	r := sample(t)
	want := Counts{Run: 6, Pass: 2, Fail: 2, Warn: 1, NotApplicable: 1}
	if got := r.Count(); got != want {
		t.Fatalf("Count() = %+v, want %+v", got, want)
	}
	// kube-bench's own totals agree.
	if r.Totals != (Summary{Pass: 2, Fail: 2, Warn: 1, Info: 1}) {
		t.Fatalf("Totals = %+v", r.Totals)
	}
	if got := r.FailedIDs(); !slices.Equal(got, []string{"1.2.15", "4.2.13"}) {
		t.Fatalf("FailedIDs() = %v", got)
	}
	if got := r.With(Info); len(got) != 1 || got[0].ID != "1.1.12" || got[0].Type != "skip" {
		t.Fatalf("With(INFO) = %+v", got)
	}
}

func TestWriteReport(t *testing.T) {
	var buf bytes.Buffer
	WriteReport(&buf, sample(t))
	out := buf.String()
	for _, want := range []string{
		"[FAIL] 1.2.15 Ensure that the --profiling argument is set to false (Automated)\n",
		// The found value on one line.
		"found:    root 683 kube-apiserver --advertise-address=192.0.2.2 --authorization-mode=Node,RBAC\n",
		"expected: '--profiling' is present\n",
		"[WARN] 1.2.9 Ensure that the admission control plugin EventRateLimit is set (Manual)\n",
		"[FAIL] 4.2.13 Ensure that a limit is set on pod PIDs (Manual)\n",
		"[N/A]  1.1.12 Ensure that the etcd data directory ownership is set to etcd:etcd (Automated)\n       Not applicable to a u7s node: no etcd user\n",
		"\n6 checks run: 2 PASS, 2 FAIL, 1 WARN, 1 not applicable\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	for _, pass := range []string{"1.1.11", "4.2.1"} {
		if strings.Contains(out, "] "+pass+" ") {
			t.Errorf("report lists the passed check %s:\n%s", pass, out)
		}
	}
}

func TestParseResultErrors(t *testing.T) {
	for _, in := range []string{"", "not json", `{"Controls":[]}`, `[{"id":"1"}]`} {
		if _, err := ParseResult([]byte(in)); err == nil {
			t.Errorf("ParseResult(%q) gave no error", in)
		}
	}
}

func TestWriteReportLongValue(t *testing.T) {
	r := sample(t)
	// A check on flags finds the whole ps output: not printed.
	r.Controls[0].Groups[1].Checks[0].ActualValue = strings.Repeat("root 444 /usr/bin/conmon -b /run/u7s/crio\n", 20)
	var buf bytes.Buffer
	WriteReport(&buf, r)
	if strings.Contains(buf.String(), "conmon") {
		t.Errorf("report prints a long found value:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "expected: '--profiling' is present\n") {
		t.Errorf("report lacks the expectation:\n%s", buf.String())
	}
}

func TestWrap(t *testing.T) {
	got := wrap("aaa bbb ccc dddddddddd e", 7)
	if want := []string{"aaa bbb", "ccc", "dddddddddd", "e"}; !slices.Equal(got, want) {
		t.Fatalf("wrap = %q, want %q", got, want)
	}
}
