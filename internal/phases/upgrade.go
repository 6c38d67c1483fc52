package phases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/etcdbackup"
	"github.com/u7s/u7s/internal/flannel"
	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/maintenance"
	"github.com/u7s/u7s/internal/netpol"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/registry"
	"github.com/u7s/u7s/internal/release"
	"github.com/u7s/u7s/internal/upgrade"
	"github.com/u7s/u7s/internal/version"
)

// The upgrade flows: u7s upgrade apply on the first control plane, then u7s upgrade node on
// every other node, control planes first. Each node in turn: checks, the cluster-wide lock
// (cordoned and drained by the coordinator), kubeadm's upgrade, the node's own release, a
// restart, Ready at the new version, uncordoned and the lock given back.

// UpgradeApply upgrades the control plane and this, its first, node: kubeadm upgrade apply.
func UpgradeApply() []workflow.Phase {
	return []workflow.Phase{
		upgradePreflightPhase(upgradeApplyChecks),
		upgradeSnapshotPhase(),
		upgradeDrainPhase(),
		upgradeKubeadmPhase("kubeadm upgrade apply (the control plane, then this node)", "upgrade", "apply", "--yes"),
		upgradeAddonsPhase(),
		upgradeReleasePhase(),
		upgradeRestartPhase(),
		upgradeUncordonPhase("Next: u7s upgrade node on every other control plane, then on every worker, one after the other."),
	}
}

// UpgradeNode upgrades a further control plane or a worker after UpgradeApply: kubeadm upgrade
// node.
func UpgradeNode() []workflow.Phase {
	return []workflow.Phase{
		upgradePreflightPhase(upgradeNodeChecks),
		upgradeSnapshotPhase(),
		upgradeDrainPhase(),
		upgradeKubeadmPhase("kubeadm upgrade node (this node's control-plane part and kubelet settings)", "upgrade", "node"),
		upgradeReleasePhase(),
		upgradeRestartPhase(),
		upgradeUncordonPhase(""),
	}
}

// Upgrade flow names.
const (
	FlowUpgradeApply = "upgrade apply"
	FlowUpgradeNode  = "upgrade node"
)

// UpgradeOptions are the flags of u7s upgrade apply and node.
type UpgradeOptions struct {
	// Version is the target: the release this u7s carries.
	Version    string
	Yes        bool
	NoSnapshot bool
	// LockTimeout bounds the wait for the cluster-wide lock and the drain.
	LockTimeout time.Duration
	Verbosity   int
}

// UpgradeData is what the phases of one upgrade share.
type UpgradeData struct {
	Ctx context.Context
	In  io.Reader
	printer
	Flow string
	O    UpgradeOptions

	node    *config.Node
	cfg     *rest.Config
	cs      kubernetes.Interface
	cluster upgrade.Cluster
	from    string // the node's release before
	// done: the node runs the target already; the other phases do nothing.
	done bool
	// Locked is set once this node holds the maintenance lock: a failure after it withdraws
	// the request, so that the node is uncordoned when Ready.
	Locked bool
}

// NewUpgradeData starts an upgrade run.
func NewUpgradeData(ctx context.Context, flow string, o UpgradeOptions, in io.Reader, out io.Writer) (*UpgradeData, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("u7s %s must run as root", flow)
	}
	return &UpgradeData{Ctx: ctx, In: in, printer: printer{out}, Flow: flow, O: o}, nil
}

// apiServer is this node's API server address, "" on a worker.
func (d *UpgradeData) apiServer() string {
	if d.node.Role != config.ControlPlane {
		return ""
	}
	return fmt.Sprintf("%s:%d", d.node.AdvertiseAddress, d.node.APIServerPort)
}

func upgradePhase(name, short string, run func(*UpgradeData) error) workflow.Phase {
	return workflow.Phase{Name: name, Short: short, Run: func(c workflow.RunData) error {
		d, ok := c.(*UpgradeData)
		if !ok {
			return errors.New("internal error: upgrade phase run with the wrong data")
		}
		// A phase run alone (u7s upgrade apply phase NAME) has the node and clients too.
		if err := d.load(); err != nil {
			return err
		}
		if d.done && name != "preflight" {
			return nil
		}
		return run(d)
	}}
}

// upgradeChecks are the skew rules of one upgrade flow: which node may run it, to which version.
type upgradeChecks func(d *UpgradeData) error

// upgradeApplyChecks: apply runs on a control plane, the first to move.
func upgradeApplyChecks(d *UpgradeData) error {
	if d.node.Role != config.ControlPlane {
		return fmt.Errorf("node %s is a worker: u7s upgrade apply runs on a control plane; on a worker, after it, run u7s upgrade node", d.node.NodeName)
	}
	return upgrade.CheckApply(d.cluster, d.node.NodeName, d.apiServer(), d.O.Version)
}

// upgradeNodeChecks: node runs on every other node, after apply.
func upgradeNodeChecks(d *UpgradeData) error {
	return upgrade.CheckNode(d.cluster, d.node.NodeName, d.apiServer(), d.O.Version)
}

func upgradePreflightPhase(checks upgradeChecks) workflow.Phase {
	return upgradePhase("preflight", "Check the versions against the skew rules, the node, and the target's images, changing nothing", func(d *UpgradeData) error {
		return d.preflight(checks)
	})
}

// load reads the node's configuration and release and makes its client (admin.conf on a
// control plane, the node's own credentials on a worker); once per run.
func (d *UpgradeData) load() error {
	if d.node != nil {
		return nil
	}
	n, err := config.Load()
	if err != nil {
		return err
	}
	if d.O.Version == "" {
		d.O.Version = release.Carried()
	}
	if d.from, err = release.Default().Current(); err != nil {
		return err
	}
	if d.cfg, err = kube.ConfigOf(n.Role == config.ControlPlane); err != nil {
		return err
	}
	if d.cs, err = kubernetes.NewForConfig(d.cfg); err != nil {
		return err
	}
	d.node = n
	return nil
}

func (d *UpgradeData) preflight(checks upgradeChecks) error {
	n, target := d.node, d.O.Version
	if node.SupervisorPID() == 0 {
		return errors.New("the node is not running: u7s start first (the upgrade drains it and asks the cluster)")
	}
	var err error
	d.step("reading the cluster's versions")
	if d.cluster, err = upgrade.Read(d.Ctx, d.cfg, n.NodeName); err != nil {
		return err
	}
	fmt.Fprint(d.Out, d.cluster.Summary())
	fmt.Fprintf(d.Out, "    this node's release: %s; this u7s carries %s\n", release.Show(d.from), release.Carried())
	err = checks(d)
	if errors.Is(err, upgrade.ErrUpToDate) && d.from == target {
		d.step("node %s runs %s already: nothing to do", n.NodeName, target)
		d.done = true
		return nil
	}
	if err != nil && !errors.Is(err, upgrade.ErrUpToDate) {
		return fmt.Errorf("%w\nnothing was changed", err)
	}
	if err := upgrade.CheckCarried(target, release.Carried()); err != nil {
		return fmt.Errorf("%w\nnothing was changed", err)
	}
	if err := d.checkImages(); err != nil {
		return err
	}
	return confirm(d.In, d.Out, d.O.Yes, fmt.Sprintf("This drains node %s, upgrades it to Kubernetes %s and restarts it.", n.NodeName, target))
}

// resolution is the registry the node uses, with this u7s's rules.
func (d *UpgradeData) resolution() (registry.Resolution, error) {
	return registry.Resolve(registry.Source{Env: func(string) (string, bool) { return d.node.Registry, true }})
}

// checkImages: the registry the node uses has the target's images, signed when the node
// runs only signed images.
func (d *UpgradeData) checkImages() error {
	res, err := d.resolution()
	if err != nil {
		return err
	}
	return checkImages(d.Ctx, registry.Refs(res.Images()), d.node.ImageSigningKey, "of "+d.O.Version, "first", d.step)
}

func upgradeSnapshotPhase() workflow.Phase {
	return upgradePhase("snapshot", "On a control plane, save an etcd snapshot to go back to (into "+etcdbackup.Dir+")", func(d *UpgradeData) error {
		if d.node.Role != config.ControlPlane || d.O.NoSnapshot {
			return nil
		}
		name := fmt.Sprintf("pre-upgrade-%s-%s.db", d.O.Version, time.Now().UTC().Format("20060102T150405Z"))
		file := filepath.Join(etcdbackup.Dir, name)
		d.step("saving an etcd snapshot before the upgrade: %s", file)
		if err := os.MkdirAll(etcdbackup.Dir, 0o700); err != nil {
			return err
		}
		info, err := etcdbackup.Save(d.Ctx, etcdbackup.MemberAt(d.node.AdvertiseAddress), file)
		if err != nil {
			return fmt.Errorf("saving an etcd snapshot (--no-snapshot to go on without): %w", err)
		}
		fmt.Fprintf(d.Out, "    revision %d, %d bytes\n", info.Revision, info.Size)
		return nil
	})
}

func upgradeDrainPhase() workflow.Phase {
	return upgradePhase("drain", "Take the cluster-wide maintenance lock: a control plane's coordinator cordons and drains the node (PodDisruptionBudgets respected)", func(d *UpgradeData) error {
		d.step("asking for the cluster-wide maintenance lock (one node at a time); the coordinator cordons and drains %s", d.node.NodeName)
		start := time.Now()
		d.Locked = true
		if err := maintenance.Acquire(d.Ctx, d.cs, d.node.NodeName, maintenance.ReasonUpgrade, d.O.LockTimeout, d.Out); err != nil {
			d.Locked = false
			return err
		}
		fmt.Fprintf(d.Out, "    lock held, node drained (%.0fs)\n", time.Since(start).Seconds())
		return nil
	})
}

// upgradeKubeadmPhase runs kubeadm with verb (upgrade apply or upgrade node, then extra) inside
// the namespace.
func upgradeKubeadmPhase(what string, verb ...string) workflow.Phase {
	return upgradePhase("kubeadm", "Run "+what+" inside the namespace", func(d *UpgradeData) error {
		o, err := node.LookupOwner()
		if err != nil {
			return err
		}
		doc, err := kubeadm.UpgradeDocument(d.O.Version, d.node)
		if err != nil {
			return err
		}
		// This release's patches (a node made by an older one has fewer): kubeadm applies them
		// to the manifests and the kubelet settings it writes.
		if err := kubeadm.WritePatches(d.node); err != nil {
			return err
		}
		file := kubeadmConfigFile("upgrade")
		if err := host.RecordCreated(file); err != nil {
			return err
		}
		if err := fsutil.WriteFileAtomic(file, doc, 0o644); err != nil {
			return err
		}
		if verb[1] == "apply" {
			d.step("checking that the cluster runs a workload (a Job of %s; up to %s)", d.node.PauseImage, d.node.Timeout())
			cs, err := kube.Admin()
			if err != nil {
				return err
			}
			if err := upgrade.WorkloadRuns(d.Ctx, cs, d.node.PauseImage, d.node.Timeout()); err != nil {
				return err
			}
		}
		args := append([]string{"kubeadm"}, verb[:2]...)
		args = append(append(args, "--config", file), verb[2:]...)
		if d.O.Verbosity > 0 {
			args = append(args, "-v", strconv.Itoa(d.O.Verbosity))
		}
		d.step("running %s inside the namespace", strings.Join(args, " "))
		start := time.Now()
		if err := runInNode(o, args...); err != nil {
			return fmt.Errorf("%s failed (kubeadm put back what it changed; logs: %s): %w", strings.Join(args, " "), paths.LogDir, err)
		}
		fmt.Fprintf(d.Out, "    done (%.0fs)\n", time.Since(start).Seconds())
		return nil
	})
}

// upgradeAddonsPhase moves the cluster's add-ons that u7s, not kubeadm, installed (flannel,
// NetworkPolicy enforcement, the default StorageClass's provisioner, metrics-server) to this release's images and manifests, as kubeadm's upgrade
// apply moves kube-proxy and CoreDNS; a cluster made before u7s enforced policies gets it here.
func upgradeAddonsPhase() workflow.Phase {
	return upgradePhase("addons", "Move flannel, NetworkPolicy enforcement, local volumes and metrics-server to this release's images", func(d *UpgradeData) error {
		res, err := d.resolution()
		if err != nil {
			return err
		}
		fl, np := res.FlannelImage(version.Pinned), res.NetpolImage(version.Pinned)
		d.step("applying flannel (%s) and NetworkPolicy enforcement (%s)", fl, np)
		ctx, cancel := context.WithTimeout(d.Ctx, d.node.Timeout())
		defer cancel()
		if err := flannel.Apply(ctx, d.cs, flannelOptions(d.node, fl)); err != nil {
			return err
		}
		if err := netpol.Apply(ctx, d.cs, netpolOptions(d.node, np)); err != nil {
			return err
		}
		return applyAddons(ctx, d.cs, d.node, res, true, d.step)
	})
}

func upgradeReleasePhase() workflow.Phase {
	return upgradePhase("release", "Point the node at this u7s's release (kubelet, cri-o, pinns, runc in "+paths.ReleasesDir+")", func(d *UpgradeData) error {
		s := release.Default()
		d.step("switching node %s from release %s to %s", d.node.NodeName, release.Show(d.from), d.O.Version)
		if err := s.Import(d.Ctx, d.O.Version); err != nil {
			return err
		}
		return s.Use(d.O.Version)
	})
}

func upgradeRestartPhase() workflow.Phase {
	return upgradePhase("restart", "Restart the node with the new release and wait until it is Ready at the new version", func(d *UpgradeData) error {
		d.step("restarting the node")
		start := time.Now()
		if err := Restart(d.Ctx, d.node, d.Out, d.O.Version); err != nil {
			return err
		}
		d.detail("node %s runs kubelet %s (%.0fs)", d.node.NodeName, d.O.Version, time.Since(start).Seconds())
		return nil
	})
}

// upgradeUncordonPhase ends with next, what the admin does after this node ("": nothing).
func upgradeUncordonPhase(next string) workflow.Phase {
	return upgradePhase("uncordon", "Give the lock back: the coordinator uncordons the node; keep the previous release, drop older ones", func(d *UpgradeData) error {
		d.step("giving the maintenance lock back; the coordinator uncordons %s", d.node.NodeName)
		if err := maintenance.Release(d.Ctx, d.cs, d.node.NodeName); err != nil {
			return err
		}
		d.Locked = false
		ctx, cancel := context.WithTimeout(d.Ctx, d.node.Timeout())
		defer cancel()
		if err := waitUncordoned(ctx, d.cs, d.node.NodeName); err != nil {
			return err
		}
		if err := release.Default().Prune(d.from); err != nil {
			fmt.Fprintf(d.Out, "    warning: removing old releases: %v\n", err)
		}
		fmt.Fprintf(d.Out, "\nNode %s runs Kubernetes %s.\n", d.node.NodeName, d.O.Version)
		if next != "" {
			fmt.Fprintln(d.Out, next)
		}
		return nil
	})
}

func waitUncordoned(ctx context.Context, cs kubernetes.Interface, name string) error {
	err := kube.Poll(ctx, 2*time.Second, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return err == nil && !n.Spec.Unschedulable && n.Annotations[maintenance.ApprovedAnnotation] == "", nil
	})
	if err != nil {
		return fmt.Errorf("node %s is still cordoned: no control plane's coordinator finished the maintenance (see %s there); kubectl uncordon %s undoes it by hand", name, paths.SupervisorLog, name)
	}
	return nil
}

// UndoUpgrade withdraws a failed upgrade's lock request: the coordinator uncordons the node
// once it is Ready. Run again, the upgrade goes on from where it stopped.
func (d *UpgradeData) UndoUpgrade() error {
	if !d.Locked {
		return nil
	}
	return maintenance.Release(context.Background(), d.cs, d.node.NodeName)
}
