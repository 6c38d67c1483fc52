package upgrade

import (
	"context"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/u7s/u7s/internal/kube"
)

// WorkloadRuns checks that the cluster can run a workload before its upgrade, as kubeadm's
// CreateJob check does (a Job of the pause image as a non-root user, tolerating the control
// plane's taint, on any schedulable node), but waiting up to timeout, the node's step timeout:
// kubeadm waits one fixed minute, which a loaded or slow cluster misses (a worker's pod start
// took longer in CI, and the upgrade stopped). The Job is deleted afterwards.
func WorkloadRuns(ctx context.Context, cs kubernetes.Interface, pauseImage string, timeout time.Duration) error {
	name := fmt.Sprintf("u7s-upgrade-health-check-%d", time.Now().UnixMilli())
	jobs := cs.BatchV1().Jobs(metav1.NamespaceSystem)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: metav1.NamespaceSystem, Labels: map[string]string{"app.kubernetes.io/managed-by": "u7s"}},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To[int32](0),
			ActiveDeadlineSeconds: ptr.To(int64(timeout.Seconds())),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy:   corev1.RestartPolicyNever,
				SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](999), RunAsGroup: ptr.To[int64](999), RunAsNonRoot: ptr.To(true)},
				Tolerations:     []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}},
				Containers:      []corev1.Container{{Name: "check", Image: pauseImage, Args: []string{"-v"}}},
			}},
		},
	}
	if _, err := jobs.Create(ctx, job, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the health-check Job %s: %w", name, err)
	}
	defer func() {
		bg := metav1.DeletePropagationBackground
		_ = jobs.Delete(context.WithoutCancel(ctx), name, metav1.DeleteOptions{PropagationPolicy: &bg})
	}()
	var state string
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := kube.Poll(wctx, time.Second, func(ctx context.Context) (bool, error) {
		j, err := jobs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			state = err.Error()
			return false, nil
		}
		for _, c := range j.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			switch c.Type {
			case batchv1.JobComplete:
				return true, nil
			case batchv1.JobFailed:
				return false, fmt.Errorf("the health-check Job %s failed: %s: %s", name, c.Reason, c.Message)
			}
		}
		state = fmt.Sprintf("%d active, %d failed", j.Status.Active, j.Status.Failed)
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("the cluster cannot run a workload: the health-check Job %s (image %s) did not complete within %s (%s): "+
			"check that a node is schedulable and Ready and that the image pulls (kubectl -n kube-system describe job %s): %w",
			name, pauseImage, timeout, state, name, err)
	}
	return nil
}
