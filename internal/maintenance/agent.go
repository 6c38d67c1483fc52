package maintenance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// RebootRequired is the sentinel Debian's and ALT's update tools leave when a reboot is due.
const RebootRequired = "/var/run/reboot-required"

// Agent is the host side of one node (root): it asks for a reboot when the sentinel is
// there, reboots once approved, and withdraws the request after the boot when the node is
// Ready again.
type Agent struct {
	Client kubernetes.Interface // the node's own credentials (kubelet.conf)
	Node   string
	// Sentinel is RebootRequired; Marker records across the reboot that it was ours; Asked,
	// that the Node carries our request. Without any of the three, Step asks nothing of the API
	// server (the timer runs it every 20 s on every node). Asked "": always ask.
	Sentinel, Marker, Asked string
	// Window is when a reboot may start ("" = any time).
	Window Window
	Reboot func() error
	Logf   func(format string, args ...any)
	Now    func() time.Time
}

// State is what u7s status says about the node's maintenance.
type State string

const (
	Idle      State = "none"
	Waiting   State = "reboot pending: waiting for the cluster-wide lock"
	OutWindow State = "reboot pending: outside the reboot window"
	Rebooting State = "reboot approved: rebooting"
	Returning State = "rebooted: waiting for the node to be Ready"
	Busy      State = "reboot pending: the node is in maintenance for an upgrade"
)

// Step does what is due now and says where the node is.
func (a *Agent) Step(ctx context.Context) (State, error) {
	if a.Asked != "" && !exists(a.Sentinel) && !exists(a.Marker) && !exists(a.Asked) {
		return Idle, nil
	}
	n, err := a.Client.CoreV1().Nodes().Get(ctx, a.Node, metav1.GetOptions{})
	if err != nil {
		return Idle, err
	}
	reason, requested := n.Annotations[RequestAnnotation]
	// Only its own requests: an upgrade (u7s upgrade) asks with the same annotation.
	asking := requested && reason == ReasonReboot
	_, approved := n.Annotations[ApprovedAnnotation]
	if since, ok := markedAt(a.Marker); ok {
		// Back from our reboot: done once the kubelet reported Ready since (a Ready from
		// before the reboot may not have timed out yet).
		if !readySince(n, since) {
			return Returning, nil
		}
		if asking {
			if err := Annotate(ctx, a.Client, a.Node, RequestAnnotation, nil); err != nil {
				return Returning, err
			}
		}
		a.Logf("maintenance: node %s is back after its reboot; request withdrawn", a.Node)
		a.forgetAsked()
		return Idle, os.Remove(a.Marker)
	}
	if requested && !asking {
		a.forgetAsked()
		if exists(a.Sentinel) {
			return Busy, nil
		}
		return Idle, nil
	}
	if !exists(a.Sentinel) {
		if asking && !approved { // the sentinel went away before it was our turn
			if err := Annotate(ctx, a.Client, a.Node, RequestAnnotation, nil); err != nil {
				return Idle, err
			}
			asking = false
		}
		if !asking {
			a.forgetAsked()
		}
		return Idle, nil
	}
	if !asking {
		if !a.Window.Contains(a.now()) {
			return OutWindow, nil
		}
		a.Logf("maintenance: %s exists: node %s asks for a reboot", a.Sentinel, a.Node)
		// Recorded before the request, so that a request made is never forgotten.
		if a.Asked != "" {
			if err := os.WriteFile(a.Asked, []byte(a.now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
				return Waiting, err
			}
		}
		return Waiting, Annotate(ctx, a.Client, a.Node, RequestAnnotation, ptr.To(ReasonReboot))
	}
	if !approved {
		return Waiting, nil
	}
	a.Logf("maintenance: approved: rebooting %s", a.Node)
	if err := os.WriteFile(a.Marker, []byte(a.now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return Waiting, err
	}
	if err := a.Reboot(); err != nil {
		os.Remove(a.Marker)
		return Waiting, fmt.Errorf("rebooting: %w", err)
	}
	return Rebooting, nil
}

// forgetAsked: the Node carries no request of ours (any more).
func (a *Agent) forgetAsked() {
	if a.Asked != "" {
		_ = os.Remove(a.Asked)
	}
}

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// markedAt is when the marker was written (just before the reboot); a marker that cannot be
// read counts as written now.
func markedAt(p string) (time.Time, bool) {
	b, err := os.ReadFile(p)
	if err != nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Now(), true
	}
	return t, true
}

// readySince: the node is Ready by a heartbeat after t.
func readySince(n *corev1.Node, t time.Time) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue && c.LastHeartbeatTime.After(t)
		}
	}
	return false
}

// Window is a daily time range in local time, "HH:MM-HH:MM" (it may wrap past midnight);
// the zero Window is always open.
type Window struct{ from, to int } // minutes since midnight; from == to: always

// ParseWindow reads "HH:MM-HH:MM"; "" is always.
func ParseWindow(s string) (Window, error) {
	if s == "" {
		return Window{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return Window{}, fmt.Errorf("reboot window %q: want HH:MM-HH:MM, e.g. 01:00-05:00", s)
	}
	from, err1 := minutes(a)
	to, err2 := minutes(b)
	if err := errors.Join(err1, err2); err != nil {
		return Window{}, fmt.Errorf("reboot window %q: %w", s, err)
	}
	return Window{from, to}, nil
}

func minutes(hm string) (int, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(hm))
	if err != nil {
		return 0, fmt.Errorf("%q is not HH:MM", hm)
	}
	return t.Hour()*60 + t.Minute(), nil
}

// Contains says whether t (its local clock time) is inside the window.
func (w Window) Contains(t time.Time) bool {
	if w.from == w.to {
		return true
	}
	m := t.Hour()*60 + t.Minute()
	if w.from < w.to {
		return m >= w.from && m < w.to
	}
	return m >= w.from || m < w.to
}
