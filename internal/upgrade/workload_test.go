package upgrade

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// completing makes every Job the fake client creates report cond at once.
func completing(cs *fake.Clientset, cond batchv1.JobConditionType) {
	cs.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		j := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
		j.Status.Conditions = []batchv1.JobCondition{{Type: cond, Status: corev1.ConditionTrue, Reason: "Test"}}
		return false, nil, nil
	})
}

func TestWorkloadRuns(t *testing.T) {
	cs := fake.NewSimpleClientset()
	completing(cs, batchv1.JobComplete)
	if err := WorkloadRuns(context.Background(), cs, "registry.local/k8s-p10/pause:3.10.2", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The Job is gone afterwards, and it ran the pause image as a non-root user.
	var created *batchv1.Job
	for _, a := range cs.Actions() {
		if c, ok := a.(k8stesting.CreateAction); ok && a.GetResource().Resource == "jobs" {
			created = c.GetObject().(*batchv1.Job)
		}
	}
	if created == nil || created.Spec.Template.Spec.Containers[0].Image != "registry.local/k8s-p10/pause:3.10.2" ||
		created.Spec.Template.Spec.SecurityContext == nil || !*created.Spec.Template.Spec.SecurityContext.RunAsNonRoot {
		t.Errorf("the Job: %+v", created)
	}
	if jobs, _ := cs.BatchV1().Jobs("kube-system").List(context.Background(), metav1.ListOptions{}); len(jobs.Items) != 0 {
		t.Errorf("%d Jobs left", len(jobs.Items))
	}

	failed := fake.NewSimpleClientset()
	completing(failed, batchv1.JobFailed)
	if err := WorkloadRuns(context.Background(), failed, "pause", 10*time.Second); err == nil || !strings.Contains(err.Error(), "failed") {
		t.Errorf("a failed Job: %v", err)
	}
	// Never complete: the error names the deadline, after it and not before.
	start := time.Now()
	err := WorkloadRuns(context.Background(), fake.NewSimpleClientset(), "pause", 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "did not complete within 2s") || time.Since(start) < 2*time.Second {
		t.Errorf("a Job that never completes: %v after %s", err, time.Since(start))
	}
}
