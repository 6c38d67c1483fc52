// Package upgrade holds the rules of u7s upgrade: what the cluster runs (Read), and the
// version-skew policy every step is checked against before anything changes. The steps
// themselves are phases (internal/phases/upgrade.go), the upgrade of each node kubeadm's.
//
// The rules, from Kubernetes' version-skew policy as kubeadm applies it:
//   - one minor at a time, and never down;
//   - the control planes first (u7s upgrade apply on one, u7s upgrade node on the others),
//     then the workers;
//   - a kubelet is never newer than an API server: a worker moves only once every control
//     plane runs the new version, and a node never joins with a kubelet newer than the cluster.
package upgrade

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
)

// Cluster is what the rules look at.
type Cluster struct {
	// Version is the control plane's version in kubeadm's kubeadm-config: the target of the
	// last completed kubeadm upgrade apply, or of init.
	Version string
	// APIServers are the version of each API server, by address (host:port): the
	// endpoints of the kubernetes Service, each asked for its /version.
	APIServers map[string]string
	// Kubelets are each node's kubelet version.
	Kubelets map[string]string
}

// ErrUpToDate: the node already runs the target; nothing to do.
var ErrUpToDate = errors.New("already upgraded")

func parse(what, v string) (*version.Version, error) {
	p, err := version.ParseSemantic(v)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a Kubernetes version (vMAJOR.MINOR.PATCH)", what, v)
	}
	return p, nil
}

// CheckTarget refuses a downgrade and a skipped minor from the cluster's version cur.
func CheckTarget(cur, target string) error {
	c, err := parse("the cluster's version", cur)
	if err != nil {
		return err
	}
	t, err := parse("the target version", target)
	if err != nil {
		return err
	}
	switch {
	case t.LessThan(c):
		return fmt.Errorf("%s is older than the cluster's %s: u7s does not downgrade (to go back, restore an etcd snapshot made before the upgrade: u7s etcd snapshot list)", target, cur)
	case t.Major() != c.Major() || t.Minor() > c.Minor()+1:
		return fmt.Errorf("%s skips a minor version: the cluster runs %s, and Kubernetes upgrades one minor at a time: upgrade to v%d.%d first",
			target, cur, c.Major(), c.Minor()+1)
	}
	return nil
}

// CheckCarried refuses a target that is not the release this u7s carries: u7s upgrades to
// the kubelet, kubeadm and images it was built with.
func CheckCarried(target, carried string) error {
	if target != carried {
		return fmt.Errorf("this u7s carries Kubernetes %s, not %s: install the u7s package that carries %s, or upgrade to %s", carried, target, target, carried)
	}
	return nil
}

// CheckApply: u7s upgrade apply TARGET on the control plane whose node is self and whose API
// server is apiServer (host:port), the first node of an upgrade.
func CheckApply(c Cluster, self, apiServer, target string) error {
	if err := CheckTarget(c.Version, target); err != nil {
		return err
	}
	// Another control plane that has not finished the previous upgrade.
	for _, a := range sorted(c.APIServers) {
		if v := c.APIServers[a]; v != c.Version && v != target {
			return fmt.Errorf("the API server at %s runs %s, not the cluster's %s: finish the previous upgrade first (u7s upgrade node on that control plane)", a, v, c.Version)
		}
	}
	if c.Version == target && c.APIServers[apiServer] == target && c.Kubelets[self] == target {
		return ErrUpToDate
	}
	return nil
}

// CheckNode: u7s upgrade node on node self, after u7s upgrade apply TARGET; apiServer is the
// address of its API server on a control plane, "" on a worker.
func CheckNode(c Cluster, self, apiServer, target string) error {
	t, err := parse("the target version", target)
	if err != nil {
		return err
	}
	cv, err := parse("the cluster's version", c.Version)
	if err != nil {
		return err
	}
	if t.GreaterThan(cv) {
		return fmt.Errorf("the control plane runs %s: upgrade it first with u7s upgrade apply %s on a control plane, then run u7s upgrade node here", c.Version, target)
	}
	if t.LessThan(cv) {
		return fmt.Errorf("this u7s carries Kubernetes %s, older than the cluster's %s: install the u7s package that carries %s", target, c.Version, c.Version)
	}
	if apiServer == "" {
		for _, a := range sorted(c.APIServers) {
			if v := c.APIServers[a]; v != target {
				return fmt.Errorf("the API server at %s still runs %s: control planes are upgraded before workers (a kubelet must not be newer than an API server): run u7s upgrade node on that control plane first", a, v)
			}
		}
	}
	if c.Kubelets[self] == target && (apiServer == "" || c.APIServers[apiServer] == target) {
		return ErrUpToDate
	}
	return nil
}

// CheckJoin refuses a node whose kubelet would be newer than the cluster's control plane
// (kubeadm-config's version: what a bootstrap token can read).
func CheckJoin(clusterVersion, kubelet string) error {
	k, err := parse("this u7s's kubelet", kubelet)
	if err != nil {
		return err
	}
	c, err := parse("the cluster's version", clusterVersion)
	if err != nil {
		return err
	}
	if k.GreaterThan(c) {
		return fmt.Errorf("this u7s carries kubelet %s, newer than the cluster's control plane (%s), and a kubelet must not be newer than its API server: "+
			"upgrade the cluster first (u7s upgrade apply %s on a control plane), or join with the u7s package that carries %s", kubelet, clusterVersion, kubelet, clusterVersion)
	}
	return nil
}

func sorted(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Summary says what runs where.
func (c Cluster) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "    control plane (kubeadm-config): %s\n", c.Version)
	for _, a := range sorted(c.APIServers) {
		fmt.Fprintf(&b, "    API server %-21s %s\n", a, c.APIServers[a])
	}
	for _, n := range sorted(c.Kubelets) {
		fmt.Fprintf(&b, "    kubelet of %-21s %s\n", n, orDash(c.Kubelets[n]))
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
