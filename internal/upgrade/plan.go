package upgrade

import (
	"fmt"
	"strings"
)

// Plan is what u7s upgrade plan says: the steps to target, in order, or why not.
type Plan struct {
	Target string
	// Steps are the commands to run, one node after the other.
	Steps []string
	// Changes say what moves from which version to which.
	Changes []string
	// Refusal is why the upgrade cannot be made (nil: it can).
	Refusal  error
	UpToDate bool
}

// MakePlan orders the upgrade of c to target with a u7s that carries carried.
func MakePlan(c Cluster, target, carried string) Plan {
	p := Plan{Target: target}
	if err := CheckTarget(c.Version, target); err != nil {
		p.Refusal = err
		return p
	}
	if err := CheckCarried(target, carried); err != nil {
		p.Refusal = err
		return p
	}
	var cpsBehind []string
	for _, a := range sorted(c.APIServers) {
		if c.APIServers[a] != target {
			cpsBehind = append(cpsBehind, a)
		}
	}
	var kubeletsBehind []string
	for _, n := range sorted(c.Kubelets) {
		if c.Kubelets[n] != target {
			kubeletsBehind = append(kubeletsBehind, n)
		}
	}
	if c.Version == target && len(cpsBehind) == 0 && len(kubeletsBehind) == 0 {
		p.UpToDate = true
		return p
	}
	if c.Version != target {
		p.Changes = append(p.Changes, fmt.Sprintf("control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, CoreDNS as kubeadm pins them): %s -> %s", c.Version, target))
		p.Steps = append(p.Steps, fmt.Sprintf("u7s upgrade apply %s   on one control plane", target))
	}
	for _, a := range cpsBehind {
		if c.Version == target {
			p.Steps = append(p.Steps, fmt.Sprintf("u7s upgrade node   on the control plane whose API server is %s (it runs %s)", a, c.APIServers[a]))
		}
	}
	if c.Version != target && len(c.APIServers) > 1 {
		p.Steps = append(p.Steps, "u7s upgrade node   on each other control plane, one after the other")
	}
	for _, n := range kubeletsBehind {
		p.Changes = append(p.Changes, fmt.Sprintf("node %s: kubelet, cri-o, runc of %s -> %s", n, c.Kubelets[n], target))
	}
	p.Steps = append(p.Steps, "u7s upgrade node   on each worker whose kubelet is older, one after the other, after every control plane")
	return p
}

func (p Plan) String() string {
	var b strings.Builder
	switch {
	case p.Refusal != nil:
		fmt.Fprintf(&b, "No upgrade to %s: %v\n", p.Target, p.Refusal)
	case p.UpToDate:
		fmt.Fprintf(&b, "Every node runs %s: nothing to upgrade.\n", p.Target)
	default:
		fmt.Fprintf(&b, "Upgrade to %s:\n", p.Target)
		for _, c := range p.Changes {
			fmt.Fprintf(&b, "  - %s\n", c)
		}
		fmt.Fprintf(&b, "In this order (each node is drained, upgraded, restarted and uncordoned in turn):\n")
		for i, s := range p.Steps {
			fmt.Fprintf(&b, "  %d. %s\n", i+1, s)
		}
	}
	return b.String()
}
