// Command report summarises a run of upstream's e2e suite (make conformance) from the JUnit
// file ginkgo wrote: how many specs passed, failed and were skipped, and for each failure its
// cause, so that a failure is read in one line instead of in a 100 MB log.
//
//	go run ./test/conformance/report [-limits FILE] junit.xml
//
// -limits names the failures that are true limits of a rootless node (one regular expression of
// spec names a line, '#' comments): they are listed apart and do not fail the report. The exit
// status is 1 when any other spec failed.
package main

import (
	"bufio"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

// JUnit is the part of ginkgo's JUnit report read here.
type JUnit struct {
	Suites []struct {
		Cases []Case `xml:"testcase"`
	} `xml:"testsuite"`
}

// Case is one spec.
type Case struct {
	Name    string  `xml:"name,attr"`
	Status  string  `xml:"status,attr"`
	Time    float64 `xml:"time,attr"`
	Failure *struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
}

// Summary counts a run.
type Summary struct {
	Passed, Skipped int
	// Failed are the failures not in the limits; Limited those that are.
	Failed, Limited []Failure
	Seconds         float64
}

// Failure is a failed spec and its cause.
type Failure struct {
	Name, Cause string
}

// causes name the usual reasons in words; the first that matches a failure's text wins.
var causes = []struct {
	re   *regexp.Regexp
	name string
}{
	{regexp.MustCompile(`ErrImagePull|ImagePullBackOff|[Ff]ailed to pull image|SignatureValidationFailed`), "an image the node could not pull"},
	{regexp.MustCompile(`(?i)permission denied|operation not permitted`), "permission denied"},
	{regexp.MustCompile(`(?i)timed out|deadline exceeded|timeout`), "timed out"},
}

// Cause is one line saying why a spec failed: the kind of reason, then the first line of
// the failure's message.
func Cause(c Case) string {
	var msg, text string
	switch {
	case c.Failure != nil:
		msg, text = c.Failure.Message, c.Failure.Text
	case c.Error != nil:
		msg, text = c.Error.Message, c.Error.Text
	}
	first := strings.TrimSpace(msg)
	if i := strings.IndexByte(first, '\n'); i >= 0 {
		first = first[:i]
	}
	if len(first) > 300 {
		first = first[:300] + "..."
	}
	for _, k := range causes {
		if k.re.MatchString(msg) || k.re.MatchString(text) {
			return k.name + ": " + first
		}
	}
	return first
}

// Summarise reads a JUnit report; limits are the specs whose failure is a rootless limit.
func Summarise(r io.Reader, limits []*regexp.Regexp) (Summary, error) {
	var j JUnit
	if err := xml.NewDecoder(r).Decode(&j); err != nil {
		return Summary{}, fmt.Errorf("reading the JUnit report: %w", err)
	}
	var s Summary
	for _, suite := range j.Suites {
		for _, c := range suite.Cases {
			// Specs are "[It] ..."; the suite's own nodes ([SynchronizedBeforeSuite],
			// [ReportAfterSuite] ..., one set per process) count only when they fail.
			if !strings.HasPrefix(c.Name, "[It] ") {
				if c.Failure != nil || c.Error != nil {
					s.Failed = append(s.Failed, Failure{c.Name, Cause(c)})
				}
				continue
			}
			s.Seconds += c.Time
			switch {
			case c.Failure != nil || c.Error != nil || c.Status == "failed" || c.Status == "panicked" || c.Status == "timedout" || c.Status == "interrupted":
				f := Failure{Name: c.Name, Cause: Cause(c)}
				if limited(c.Name, limits) {
					s.Limited = append(s.Limited, f)
				} else {
					s.Failed = append(s.Failed, f)
				}
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				s.Skipped++
			default:
				s.Passed++
			}
		}
	}
	sort.Slice(s.Failed, func(a, b int) bool { return s.Failed[a].Name < s.Failed[b].Name })
	sort.Slice(s.Limited, func(a, b int) bool { return s.Limited[a].Name < s.Limited[b].Name })
	return s, nil
}

func limited(name string, limits []*regexp.Regexp) bool {
	for _, re := range limits {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

// ReadLimits reads one regular expression a line; blank lines and '#' comments are skipped.
func ReadLimits(r io.Reader) ([]*regexp.Regexp, error) {
	var res []*regexp.Regexp
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		re, err := regexp.Compile(l)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		res = append(res, re)
	}
	return res, sc.Err()
}

// Print writes the summary for a person.
func (s Summary) Print(w io.Writer) {
	fmt.Fprintf(w, "conformance: %d passed, %d failed, %d failed as rootless limits, %d skipped (specs ran %.0f s in all)\n",
		s.Passed, len(s.Failed), len(s.Limited), s.Skipped, s.Seconds)
	for _, f := range s.Failed {
		fmt.Fprintf(w, "FAILED %s\n       cause: %s\n", f.Name, f.Cause)
	}
	for _, f := range s.Limited {
		fmt.Fprintf(w, "LIMIT  %s\n       cause: %s\n", f.Name, f.Cause)
	}
}

func main() {
	limitsFile := flag.String("limits", "", "file of spec-name regular expressions that are rootless limits")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: report [-limits FILE] junit.xml")
		os.Exit(2)
	}
	var limits []*regexp.Regexp
	if *limitsFile != "" {
		f, err := os.Open(*limitsFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
			os.Exit(2)
		}
		limits, err = ReadLimits(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "report: %s: %v\n", *limitsFile, err)
			os.Exit(2)
		}
	}
	f, err := os.Open(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(2)
	}
	defer f.Close()
	s, err := Summarise(f, limits)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(2)
	}
	s.Print(os.Stdout)
	if len(s.Failed) > 0 {
		os.Exit(1)
	}
}
