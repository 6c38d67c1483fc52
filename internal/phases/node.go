package phases

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/controlplane"
	"github.com/u7s/u7s/internal/etcdbackup"
	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/release"
	"github.com/u7s/u7s/internal/service"
	"github.com/u7s/u7s/internal/watch"
	"github.com/u7s/u7s/systemd"
)

// startPhase starts the node: installs and starts the systemd unit where systemd is PID 1,
// else a detached supervisor; both end when cri-o answers inside the namespace.
func startPhase() workflow.Phase {
	return phaseOf("start", "Start the node: the u7s systemd unit (or a detached supervisor), its namespace and cri-o", changesHost, func(d nodeData) error {
		n, err := d.Node()
		if err != nil {
			return err
		}
		return startNode(d, n)
	})
}

func startNode(d nodeData, n *config.Node) error {
	o, err := d.Owner()
	if err != nil {
		return err
	}
	if err := Prepare(n); err != nil {
		return err
	}
	if n.Service {
		d.step("installing and starting the systemd unit u7s.service")
		if err := installUnits(d.context(), systemd.Node); err != nil {
			return err
		}
	} else {
		d.step("starting the node's namespace (rootlesskit, slirp4netns, cri-o) as a detached supervisor (systemd is not PID 1)")
	}
	start := time.Now()
	pid, err := node.Start(d.context(), n.Service, o, n.Timeout())
	if err != nil {
		return err
	}
	d.detail("supervisor pid %d, cri-o ready in %.1fs", pid, time.Since(start).Seconds())
	return nil
}

// timersPhase enables the node's timers where systemd runs it: the coordinated-reboot agent and
// the watch on every node, the daily etcd snapshot on a control plane.
func timersPhase() workflow.Phase {
	return phase("timers", "Where systemd runs the node: enable coordinated reboots (u7s-maintenance.timer), the watch (u7s-watch.timer) and, on a control plane, daily etcd snapshots (u7s-etcd-snapshot.timer)", changesHost, func(d *Data) error {
		n, err := d.Node()
		if err != nil {
			return err
		}
		// The watch's baseline: the node's files as init or join wrote them.
		if err := watch.RecordNodeBaseline(); err != nil {
			return err
		}
		if !n.Service {
			return nil
		}
		var timers [][]systemd.Unit
		if !n.NoCoordinatedReboots {
			d.step("coordinated reboots on /var/run/reboot-required (%s)", systemd.MaintenanceTimer.Name)
			timers = append(timers, systemd.Every)
		}
		d.step("the watch: u7s check all hourly (%s; journalctl -t u7s-watch), the node's files as u7s wrote them its baseline", systemd.WatchTimer.Name)
		timers = append(timers, systemd.Watch)
		if n.Role == config.ControlPlane {
			d.step("scheduling etcd snapshots (%s, into %s)", systemd.SnapshotTimer.Name, etcdbackup.Dir)
			timers = append(timers, systemd.ControlPlane)
		}
		for _, units := range timers {
			if err := installUnits(d.Ctx, units...); err != nil {
				return err
			}
			if err := service.Start(d.Ctx, units[len(units)-1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// installUnits installs units (the last one enabled), each recorded before it is written: a
// unit that was there already is not ours to remove.
func installUnits(ctx context.Context, units ...systemd.Unit) error {
	for _, u := range units {
		if _, err := os.Stat(service.PackagedUnit(u)); err != nil {
			if err := host.RecordCreated(service.LocalUnit(u)); err != nil {
				return err
			}
		}
	}
	return service.Install(ctx, units...)
}

// Prepare is what root does before every start of the node (the unit's ExecStartPre, and
// u7s start): refuse a host whose address changed, and make the cgroup v1 delegation again.
func Prepare(n *config.Node) error {
	if a, err := netip.ParseAddr(n.AdvertiseAddress); err == nil && !host.HasAddress(a) {
		now := "none"
		if ip, err := host.PrimaryIPv4(); err == nil {
			now = ip.String()
		}
		return fmt.Errorf("the host's address changed: node %s was made with %s, which no interface of this host has now (its address is %s); "+
			"the old address is in the node's certificates, in etcd and in the other nodes: give the host its old address back, "+
			"or run u7s reset and then u7s join (or u7s init) again", n.NodeName, a, now)
	}
	if err := release.Default().Check(context.Background()); err != nil {
		return err
	}
	cg, err := cgroups.For(n.Cgroup)
	if err != nil {
		return err
	}
	return cg.Prepare()
}

// kubeadmPhase runs kubeadm init or join, linked into u7s, inside the namespace.
func kubeadmPhase(flow string) workflow.Phase {
	return phase("kubeadm", "Run kubeadm "+flow+" (linked into u7s) inside the namespace", changesHost, func(d *Data) error {
		o, err := d.Owner()
		if err != nil {
			return err
		}
		d.step("running kubeadm %s inside the namespace", flow)
		var flags []string
		if flow == FlowInit && d.O.UploadCerts {
			flags = append(flags, "--upload-certs")
		}
		if d.O.Verbosity > 0 {
			flags = append(flags, "-v", strconv.Itoa(d.O.Verbosity))
		}
		if flow == FlowJoin && d.O.ControlPlane {
			return d.joinControlPlane(o, flags)
		}
		if err := runInNode(o, append([]string{"kubeadm", flow, "--config", kubeadmConfigFile(flow)}, flags...)...); err != nil {
			return fmt.Errorf("kubeadm %s failed (logs: %s): %w", flow, paths.LogDir, err)
		}
		return nil
	})
}

// joinControlPlane runs kubeadm join for a control plane in three parts, its etcd-join phase
// alone and again while it fails, up to the node's step timeout (kubeadm.EtcdJoinPhase says why).
func (d *Data) joinControlPlane(o node.Owner, flags []string) error {
	n, err := d.Node()
	if err != nil {
		return err
	}
	file := kubeadmConfigFile(FlowJoin)
	docs, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	part := func(name string, skip []string) error {
		f := strings.TrimSuffix(file, ".yaml") + "-" + name + ".yaml"
		b, err := kubeadm.WithSkipPhases(docs, skip)
		if err != nil {
			return err
		}
		// Recorded first, so that an undo removes it (it holds the token) if this stops here.
		if err := host.RecordCreated(f); err != nil {
			return err
		}
		if err := writeSecretFile(f, b); err != nil {
			return err
		}
		defer os.Remove(f)
		if err := runInNode(o, append([]string{"kubeadm", FlowJoin, "--config", f}, flags...)...); err != nil {
			return fmt.Errorf("kubeadm join (%s) failed (logs: %s): %w", name, paths.LogDir, err)
		}
		return nil
	}
	if err := part("before-etcd", kubeadm.JoinBeforeEtcd); err != nil {
		return err
	}
	deadline := time.Now().Add(n.Timeout())
	for attempt := 1; ; attempt++ {
		err := runInNode(o, append([]string{"kubeadm", FlowJoin, "phase", kubeadm.EtcdJoinPhase, "--config", file}, flags...)...)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubeadm join's %s failed for %s, %d tries (logs: %s; the etcd members: u7s enter -- etcdctl member list on a control plane): %w",
				kubeadm.EtcdJoinPhase, n.Timeout(), attempt, paths.LogDir, err)
		}
		d.detail("kubeadm's %s failed (%v); each of its steps is safe to repeat: again in 10 s (until %s)", kubeadm.EtcdJoinPhase, err, deadline.Format(time.TimeOnly))
		select {
		case <-d.Ctx.Done():
			return d.Ctx.Err()
		case <-time.After(10 * time.Second):
		}
	}
	return part("after-etcd", kubeadm.JoinAfterEtcd)
}

// runInNode runs u7s ARGS inside the namespace as its root, kubeadm's output filtered.
func runInNode(o node.Owner, args ...string) error {
	exe, err := os.Executable()
	if err != nil {
		exe = paths.Binary
	}
	f := kubeadm.NewOutputFilter(os.Stdout)
	defer f.Flush()
	return node.Run(o, nil, f, f, append([]string{exe}, args...)...)
}

// uploadCertsPhase uploads the control-plane certificates, encrypted with the certificate
// key, for further control planes; the key is the last line printed.
func uploadCertsPhase() workflow.Phase {
	return workflow.Phase{
		Name:  "upload-certs",
		Short: "With --upload-certs: upload the control-plane certificates for u7s join --control-plane; prints the certificate key last",
		RunIf: func(c workflow.RunData) (bool, error) {
			d, err := asData(c)
			return err == nil && d.O.UploadCerts && !d.O.DryRun, err
		},
		Run: func(c workflow.RunData) error {
			d, err := asData(c)
			if err != nil {
				return err
			}
			// kubeadm init uploaded them already when it was given the key.
			uploaded := d.certKey == ""
			if uploaded {
				if err := d.uploadCerts(); err != nil {
					return err
				}
			}
			if err := d.uploadEncryption(); err != nil {
				return err
			}
			if uploaded { // run alone: the key is the last line
				d.step("the certificate key (u7s join --control-plane --certificate-key):")
				fmt.Fprintln(d.Out, d.certKey)
			}
			return nil
		},
	}
}

func (d *Data) uploadCerts() error {
	n, err := d.Node()
	if err != nil {
		return err
	}
	if n.Role != config.ControlPlane {
		return fmt.Errorf("this node is a %s: upload the certificates on a control plane", n.Role)
	}
	key, err := kubeadm.NewCertificateKey()
	if err != nil {
		return err
	}
	cs, err := kube.Admin()
	if err != nil {
		return err
	}
	d.step("uploading the control-plane certificates (valid for 2 hours)")
	if err := kubeadm.UploadCerts(cs, key); err != nil {
		return fmt.Errorf("uploading the certificates: %w", err)
	}
	d.certKey = key
	return nil
}

// uploadEncryption adds the Secrets encryption key to the uploaded certificates, sealed with
// the same certificate key: control planes that join get both or neither.
func (d *Data) uploadEncryption() error {
	cfg, err := os.ReadFile(controlplane.EncryptionFile)
	if err != nil {
		return fmt.Errorf("reading the Secrets encryption key: %w", err)
	}
	cs, err := kube.Admin()
	if err != nil {
		return err
	}
	return kubeadm.UploadEncryption(d.Ctx, cs, d.certKey, cfg)
}

// writeSecretFile writes a file only the node's user (and root) may read.
func writeSecretFile(path string, data []byte) error {
	if err := fsutil.WriteFileAtomic(path, data, 0o600); err != nil {
		return err
	}
	o, err := node.LookupOwner()
	if err != nil {
		return err
	}
	return os.Chown(path, o.UID, o.GID)
}

// joinCommands are the printed commands that add nodes to this cluster.
func joinCommands(endpoint, token, caHash, certKey string, signed bool) string {
	var b strings.Builder
	w := fmt.Sprintf("u7s join %s --token %s --discovery-token-ca-cert-hash %s", endpoint, token, caHash)
	if signed {
		// The same key on every node: copy this host's to the new host first.
		w += " --image-signing-key " + paths.ImageSigningKey
	}
	fmt.Fprintf(&b, "Workers join with (as root, on each new host):\n\n  %s\n", w)
	if certKey != "" {
		fmt.Fprintf(&b, "\nControl planes join with (the certificates expire in 2 hours; then run u7s init phase upload-certs --upload-certs):\n\n  %s --control-plane --certificate-key %s\n", w, certKey)
	}
	if signed {
		fmt.Fprintf(&b, "\nThis cluster runs only signed images: copy %s to the same path on each new host first.\n", paths.ImageSigningKey)
	}
	fmt.Fprintf(&b, "\nThe token expires in 24 hours; make a new join command with: u7s token create --print-join-command\n")
	return b.String()
}
