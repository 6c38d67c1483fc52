// Package maintenance takes nodes out of the cluster one at a time for work that needs them
// down (a reboot for a kernel or security update, an upgrade), as kured does, but split in two
// because a rootless node can neither drain itself nor be rebooted from a pod:
//
//   - on each node, root on the host (the Agent) asks by annotating its own Node
//     (RequestAnnotation, with the node's own credentials), waits for the approval, does the
//     work (reboots), and after it withdraws the request once the node is Ready again;
//   - on the control planes, the Coordinator (admin credentials) grants one request at a time:
//     it takes the cluster-wide Lease, cordons and drains the node (PodDisruptionBudgets
//     respected, bounded), approves (ApprovedAnnotation), and when the request is withdrawn
//     uncordons the node and releases the Lease.
//
// The Lease is renewed only while the work may still be going on (MaxDuration): a node that
// dies holding it blocks the others for that long at most.
package maintenance

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

const (
	// RequestAnnotation on a Node: the node asks for maintenance; the value says why
	// ("reboot", "upgrade").
	RequestAnnotation = "u7s.io/maintenance-request"
	// ApprovedAnnotation on a Node: the coordinator holds the lock for it and drained it.
	ApprovedAnnotation = "u7s.io/maintenance-approved"
	// ReasonReboot and ReasonUpgrade are the values of RequestAnnotation.
	ReasonReboot  = "reboot"
	ReasonUpgrade = "upgrade"
	// LeaseName is the cluster-wide lock, in kube-system.
	LeaseName = "u7s-maintenance"
)

// Coordinator grants maintenance requests one node at a time.
type Coordinator struct {
	Client kubernetes.Interface
	// Identity names this coordinator in Events and logs (the control plane's node name).
	Identity string
	// MaxDuration bounds one node's maintenance: the Lease is not renewed past it.
	MaxDuration time.Duration
	// DrainTimeout bounds the drain; a drain that PodDisruptionBudgets keep from finishing
	// is given up, the node uncordoned and the lock released (tried again later).
	DrainTimeout time.Duration
	Logf         func(format string, args ...any)
	now          func() time.Time
	pollInterval time.Duration
}

func (c *Coordinator) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}

// Run checks every interval until ctx ends.
func (c *Coordinator) Run(ctx context.Context, interval time.Duration) {
	for {
		if err := c.Sync(ctx); err != nil && ctx.Err() == nil {
			c.Logf("maintenance: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// Sync is one step: finish, renew or give up the current holder's maintenance, or grant the
// next request.
func (c *Coordinator) Sync(ctx context.Context) error {
	lease, err := c.lease(ctx)
	if err != nil {
		return err
	}
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")
	if holder != "" && !c.expired(lease) {
		return c.follow(ctx, lease, holder)
	}
	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var waiting []corev1.Node
	for _, n := range nodes.Items {
		if _, ok := n.Annotations[RequestAnnotation]; ok {
			waiting = append(waiting, n)
		}
	}
	if len(waiting) == 0 {
		if holder != "" { // expired: a node that did not come back; release for good
			c.Logf("maintenance of %s took longer than %s: the lock is released", holder, c.MaxDuration)
			return c.release(ctx, lease)
		}
		return nil
	}
	// The one that waited longest; a node whose lock expired goes to the back.
	sort.SliceStable(waiting, func(i, j int) bool { return waiting[i].Name < waiting[j].Name })
	next := waiting[0]
	if len(waiting) > 1 && next.Name == holder {
		next = waiting[1]
	}
	return c.grant(ctx, lease, &next)
}

func (c *Coordinator) lease(ctx context.Context) (*coordinationv1.Lease, error) {
	leases := c.Client.CoordinationV1().Leases(metav1.NamespaceSystem)
	l, err := leases.Get(ctx, LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: metav1.NamespaceSystem}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return leases.Get(ctx, LeaseName, metav1.GetOptions{})
		}
	}
	return l, err
}

func (c *Coordinator) expired(l *coordinationv1.Lease) bool {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return true
	}
	return c.clock().After(l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second))
}

// grant takes the lock for n (an update that fails when another coordinator took it first),
// then cordons, drains and approves.
func (c *Coordinator) grant(ctx context.Context, l *coordinationv1.Lease, n *corev1.Node) error {
	now := metav1.NewMicroTime(c.clock())
	l = l.DeepCopy()
	l.Spec.HolderIdentity = ptr.To(n.Name)
	l.Spec.AcquireTime, l.Spec.RenewTime = &now, &now
	l.Spec.LeaseDurationSeconds = ptr.To(int32(60))
	l.Spec.LeaseTransitions = ptr.To(ptr.Deref(l.Spec.LeaseTransitions, 0) + 1)
	l, err := c.Client.CoordinationV1().Leases(metav1.NamespaceSystem).Update(ctx, l, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return nil // another control plane's coordinator was first
	}
	if err != nil {
		return err
	}
	c.Logf("maintenance of %s (%s): lock taken, cordoning and draining", n.Name, n.Annotations[RequestAnnotation])
	return c.drainAndApprove(ctx, l, n)
}

// drainAndApprove cordons and drains the lock's node and approves it; a drain that does not
// finish gives the lock back.
func (c *Coordinator) drainAndApprove(ctx context.Context, l *coordinationv1.Lease, n *corev1.Node) error {
	now := metav1.NewMicroTime(c.clock())
	if err := c.setUnschedulable(ctx, n.Name, true); err != nil {
		return err
	}
	if err := c.drain(ctx, n.Name, func() error { return c.renew(ctx, &l) }); err != nil {
		if errors.Is(err, errLockLost) {
			return nil // another coordinator holds the lock now and goes on with it
		}
		c.Logf("maintenance of %s: %v; uncordoning, the request stays and is tried again", n.Name, err)
		if uerr := c.setUnschedulable(ctx, n.Name, false); uerr != nil {
			return uerr
		}
		return c.release(ctx, l)
	}
	// Still ours: approved, the node reboots, and only one may.
	if err := c.renew(ctx, &l); err != nil {
		if errors.Is(err, errLockLost) {
			return nil
		}
		return err
	}
	if err := c.annotate(ctx, n.Name, ApprovedAnnotation, ptr.To(now.UTC().Format(time.RFC3339))); err != nil {
		return err
	}
	c.Logf("maintenance of %s approved", n.Name)
	return nil
}

// follow renews the lock while its node works, and ends the maintenance once the node
// withdrew its request and is Ready.
func (c *Coordinator) follow(ctx context.Context, l *coordinationv1.Lease, holder string) error {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, holder, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return c.release(ctx, l) // the node left the cluster
	}
	if err != nil {
		return err
	}
	if _, asking := n.Annotations[RequestAnnotation]; !asking && ready(n) {
		c.Logf("maintenance of %s done: uncordoning, lock released", holder)
		// The approval goes first: an approved node is always a cordoned one, for whoever
		// watches (a crash in between leaves it cordoned, and the next sync ends it again).
		if err := c.annotate(ctx, holder, ApprovedAnnotation, nil); err != nil {
			return err
		}
		if err := c.setUnschedulable(ctx, holder, false); err != nil {
			return err
		}
		return c.release(ctx, l)
	}
	if l.Spec.AcquireTime != nil && c.clock().Sub(l.Spec.AcquireTime.Time) > c.MaxDuration {
		return nil // not renewed: it expires, and the next request goes ahead
	}
	if _, approved := n.Annotations[ApprovedAnnotation]; !approved {
		// Granted but not approved: the coordinator that took the lock stopped in the drain.
		return c.drainAndApprove(ctx, l, n)
	}
	l = l.DeepCopy()
	l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(c.clock()))
	_, err = c.Client.CoordinationV1().Leases(metav1.NamespaceSystem).Update(ctx, l, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// errLockLost: the Lease changed under this coordinator (another one took or renewed it).
var errLockLost = errors.New("the maintenance lock changed hands")

// renew renews the lock *l while its node is drained: a drain on a loaded cluster outlasts the
// Lease's 60 s, and an expired Lease would let another coordinator grant a second node while
// this one is still cordoned.
func (c *Coordinator) renew(ctx context.Context, l **coordinationv1.Lease) error {
	cp := (*l).DeepCopy()
	cp.Spec.RenewTime = ptr.To(metav1.NewMicroTime(c.clock()))
	nl, err := c.Client.CoordinationV1().Leases(metav1.NamespaceSystem).Update(ctx, cp, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return errLockLost
	}
	if err != nil {
		return err
	}
	*l = nl
	return nil
}

func (c *Coordinator) release(ctx context.Context, l *coordinationv1.Lease) error {
	l = l.DeepCopy()
	l.Spec.HolderIdentity, l.Spec.RenewTime, l.Spec.AcquireTime = nil, nil, nil
	_, err := c.Client.CoordinationV1().Leases(metav1.NamespaceSystem).Update(ctx, l, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func (c *Coordinator) setUnschedulable(ctx context.Context, node string, v bool) error {
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, v)
	_, err := c.Client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

func (c *Coordinator) annotate(ctx context.Context, node, key string, value *string) error {
	return Annotate(ctx, c.Client, node, key, value)
}

// Annotate sets (or with nil removes) one annotation of a Node.
func Annotate(ctx context.Context, cs kubernetes.Interface, node, key string, value *string) error {
	v := "null"
	if value != nil {
		v = fmt.Sprintf("%q", *value)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, key, v)
	_, err := cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// drain evicts every pod of the node but DaemonSets' and static (mirror) pods, through the
// Eviction API, so that PodDisruptionBudgets hold; it waits for them to be gone, calling keep
// (which renews the lock) at every round, whose error ends the drain.
func (c *Coordinator) drain(ctx context.Context, node string, keep func() error) error {
	deadline := time.Now().Add(c.DrainTimeout) // wall time: the drain really waits
	var blocked error
	for {
		if err := keep(); err != nil {
			return err
		}
		pods, err := c.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
		if err != nil {
			return err
		}
		var left []corev1.Pod
		for _, p := range pods.Items {
			if p.Spec.NodeName == node && evictable(&p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			if blocked == nil {
				blocked = fmt.Errorf("%d pod(s) still there", len(left))
			}
			return fmt.Errorf("drain did not finish in %s: %w", c.DrainTimeout, blocked)
		}
		blocked = nil
		for _, p := range left {
			if p.DeletionTimestamp != nil {
				continue // evicted, terminating
			}
			err := c.Client.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})
			switch {
			case err == nil, apierrors.IsNotFound(err):
			case apierrors.IsTooManyRequests(err):
				blocked = fmt.Errorf("pod %s/%s: a PodDisruptionBudget allows no eviction now", p.Namespace, p.Name)
			default:
				return fmt.Errorf("evicting %s/%s: %w", p.Namespace, p.Name, err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(c.poll()):
		}
	}
}

func (c *Coordinator) poll() time.Duration {
	if c.pollInterval > 0 {
		return c.pollInterval
	}
	return 2 * time.Second
}

// evictable: what kubectl drain evicts and waits for (not DaemonSet pods, not mirror pods,
// not pods that finished by themselves; an evicted pod counts until it is deleted, whatever
// its phase).
func evictable(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	if p.DeletionTimestamp == nil && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
		return false
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" {
			return false
		}
	}
	return true
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ErrNotApproved is the Agent's answer while the coordinator has not approved it yet.
var ErrNotApproved = errors.New("maintenance not approved yet")
