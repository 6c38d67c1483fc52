package maintenance

import (
	"context"
	"fmt"
	"io"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/paths"
)

// Acquire asks for maintenance of node for reason (the Agent's protocol, for work done by a
// command such as u7s upgrade) and waits until the coordinator holds the lock for it and
// drained it. It prints who holds the lock while it waits. Given up (timeout, ctx), the
// request is withdrawn: nothing stays asked.
func Acquire(ctx context.Context, cs kubernetes.Interface, node, reason string, timeout time.Duration, out io.Writer) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if r, ok := n.Annotations[RequestAnnotation]; ok && r != reason {
		return fmt.Errorf("node %s is in maintenance for a %s already (annotation %s): wait until it is done", node, r, RequestAnnotation)
	}
	if err := Annotate(ctx, cs, node, RequestAnnotation, ptr.To(reason)); err != nil {
		return fmt.Errorf("asking for the maintenance lock: %w", err)
	}
	said := ""
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = kube.Poll(wctx, 2*time.Second, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if _, ok := n.Annotations[ApprovedAnnotation]; ok {
			return true, nil
		}
		state := "waiting for a control plane's coordinator to take the lock"
		if l, err := cs.CoordinationV1().Leases(metav1.NamespaceSystem).Get(ctx, LeaseName, metav1.GetOptions{}); err == nil {
			switch h := ptr.Deref(l.Spec.HolderIdentity, ""); h {
			case "":
			case node:
				state = "lock taken: cordoned, draining (PodDisruptionBudgets respected)"
			default:
				state = "the lock is held by node " + h + ", waiting for it"
			}
		}
		if state != said {
			fmt.Fprintf(out, "    %s\n", state)
			said = state
		}
		return false, nil
	})
	if err == nil {
		return nil
	}
	werr := Release(context.Background(), cs, node)
	return fmt.Errorf("node %s got no maintenance lock in %s (%s): see the supervisor log of a control plane (%s); the request is withdrawn%s",
		node, timeout, said, paths.SupervisorLog, errSuffix(werr))
}

// Release withdraws node's request: the coordinator uncordons the node and frees the lock once
// the node is Ready.
func Release(ctx context.Context, cs kubernetes.Interface, node string) error {
	return Annotate(ctx, cs, node, RequestAnnotation, nil)
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (withdrawing failed: " + err.Error() + ")"
}
