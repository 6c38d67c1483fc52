package flannel

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// pollInterval is how often WaitReady looks at the DaemonSet.
var pollInterval = 2 * time.Second

// WaitReady waits until flannel's DaemonSet has rolled out: an up-to-date, available pod
// on every node it should run on. It writes a line to out whenever the progress changes,
// naming why pods are not running yet (e.g. ErrImagePull). Bound it with ctx's deadline.
func WaitReady(ctx context.Context, cs kubernetes.Interface, out io.Writer) error {
	last := ""
	report := func(s string) {
		if s != last {
			fmt.Fprintf(out, "flannel: %s\n", s)
			last = s
		}
	}
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		ds, err := cs.AppsV1().DaemonSets(Namespace).Get(ctx, DaemonSetName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			report(fmt.Sprintf("waiting for DaemonSet %s/%s to exist", Namespace, DaemonSetName))
			return false, nil
		}
		if err != nil {
			// The API server may be restarting; keep trying until ctx ends.
			report(fmt.Sprintf("reading DaemonSet %s/%s: %v", Namespace, DaemonSetName, err))
			return false, nil
		}
		done, progress := rolledOut(ds)
		if !done {
			if why := podProblems(ctx, cs, ds); why != "" {
				progress += "; " + why
			}
		}
		report(progress)
		return done, nil
	})
	if err != nil {
		return fmt.Errorf("flannel is not ready (%s): see `kubectl -n %s get pods -o wide` and the pods' logs: %w",
			last, Namespace, err)
	}
	return nil
}

// rolledOut mirrors kubectl rollout status for a DaemonSet.
func rolledOut(ds *appsv1.DaemonSet) (bool, string) {
	st := ds.Status
	if st.ObservedGeneration < ds.Generation {
		return false, "waiting for the DaemonSet controller to see the new spec"
	}
	progress := fmt.Sprintf("%d of %d pods ready (%d up to date)", st.NumberAvailable, st.DesiredNumberScheduled, st.UpdatedNumberScheduled)
	if st.DesiredNumberScheduled == 0 {
		return false, progress + "; no node to run on yet"
	}
	done := st.UpdatedNumberScheduled >= st.DesiredNumberScheduled && st.NumberAvailable >= st.DesiredNumberScheduled
	return done, progress
}

// podProblems summarises why flannel's pods are not ready, e.g.
// "node1: install-cni ErrImagePull". Errors reading pods are not the caller's concern.
func podProblems(ctx context.Context, cs kubernetes.Interface, ds *appsv1.DaemonSet) string {
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return ""
	}
	pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return ""
	}
	var problems []string
	for _, p := range pods.Items {
		node := p.Spec.NodeName
		if node == "" {
			node = p.Name
		}
		statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
		for _, c := range statuses {
			switch {
			case c.State.Waiting != nil && c.State.Waiting.Reason != "" && c.State.Waiting.Reason != "PodInitializing":
				problems = append(problems, fmt.Sprintf("%s: %s %s", node, c.Name, c.State.Waiting.Reason))
			case c.State.Terminated != nil && c.State.Terminated.ExitCode != 0:
				problems = append(problems, fmt.Sprintf("%s: %s exited %d", node, c.Name, c.State.Terminated.ExitCode))
			}
		}
	}
	sort.Strings(problems)
	return strings.Join(problems, ", ")
}
