package main

import (
	"bytes"
	"strings"
	"testing"
)

const junit = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="6" disabled="0" errors="0" failures="2" time="100">
  <testsuite name="Kubernetes e2e suite" package="/e2e" tests="6" disabled="0" skipped="1" errors="0" failures="2" time="100">
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="3"></testcase>
    <testcase name="[ReportAfterSuite] Kubernetes e2e suite report" classname="Kubernetes e2e suite" status="passed" time="0"></testcase>
    <testcase name="[It] [sig-network] DNS should provide DNS for services [Conformance]" classname="Kubernetes e2e suite" status="passed" time="30"></testcase>
    <testcase name="[It] [sig-node] Pods should be updated [NodeConformance] [Conformance]" classname="Kubernetes e2e suite" status="passed" time="10"></testcase>
    <testcase name="[It] [sig-apps] Deployment should run nginx [Conformance]" classname="Kubernetes e2e suite" status="failed" time="300">
      <failure message="pod web: Back-off pulling image &#34;registry.local/e2e-test-images/nginx:1.27-0&#34;&#xA;more" type="failed">[FAILED] ErrImagePull</failure>
    </testcase>
    <testcase name="[It] [sig-node] Sysctls [LinuxOnly] should support sysctls [Environment:NotInUserNS] [Conformance]" classname="Kubernetes e2e suite" status="failed" time="5">
      <failure message="open /proc/sys/kernel/shm_rmid_forced: permission denied" type="failed"></failure>
    </testcase>
    <testcase name="[It] [sig-storage] NFS [Serial]" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
  </testsuite>
</testsuites>`

func TestSummarise(t *testing.T) {
	limits, err := ReadLimits(strings.NewReader("# rootless limits\n\nshould support sysctls\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarise(strings.NewReader(junit), limits)
	if err != nil {
		t.Fatal(err)
	}
	if s.Passed != 2 || s.Skipped != 1 || len(s.Failed) != 1 || len(s.Limited) != 1 {
		t.Fatalf("got %d passed, %d skipped, failed %v, limited %v; want 2, 1, one each", s.Passed, s.Skipped, s.Failed, s.Limited)
	}
	if got := s.Failed[0].Cause; !strings.HasPrefix(got, "an image the node could not pull: pod web: Back-off pulling image") || strings.Contains(got, "more") {
		t.Errorf("cause %q: want the kind and the message's first line", got)
	}
	if !strings.Contains(s.Limited[0].Name, "sysctls") || !strings.HasPrefix(s.Limited[0].Cause, "permission denied") {
		t.Errorf("limited %+v", s.Limited[0])
	}
	var out bytes.Buffer
	s.Print(&out)
	if !strings.Contains(out.String(), "2 passed, 1 failed, 1 failed as rootless limits, 1 skipped") {
		t.Errorf("summary line: %s", out.String())
	}
	// Without limits, the sysctl spec is a failure of its own.
	s, _ = Summarise(strings.NewReader(junit), nil)
	if len(s.Failed) != 2 || len(s.Limited) != 0 {
		t.Errorf("without limits: failed %v, limited %v", s.Failed, s.Limited)
	}
}

func TestReadLimitsRefusesBadExpression(t *testing.T) {
	if _, err := ReadLimits(strings.NewReader("ok\n([bad\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("got %v, want an error naming line 2", err)
	}
}

func TestBadReport(t *testing.T) {
	if _, err := Summarise(strings.NewReader("not xml"), nil); err == nil {
		t.Error("a report that is not JUnit XML was read")
	}
}
