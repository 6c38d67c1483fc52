package phases

import (
	"os"
	"path/filepath"

	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/controlplane"
	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/localpath"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/registry"
	"github.com/u7s/u7s/internal/service"
	"github.com/u7s/u7s/internal/version"
)

// hostPhase prepares the host; every change is recorded so that reset undoes it.
func hostPhase() workflow.Phase {
	return phase("host", "Create the user u7s-admin with subordinate ids, apply sysctls, open /dev/net/tun, make the node's directories and its volumes directory", changesHostOrSays, func(d *Data) error {
		if d.O.DryRun {
			d.step("[dry-run] would create user %s, apply sysctls and make the node's directories", paths.User)
			return nil
		}
		d.step("creating the system user %s", paths.User)
		u, err := host.EnsureUser()
		if err != nil {
			return err
		}
		d.owner = node.Owner{UID: u.UID, GID: u.GID}
		d.detail("uid %d, subordinate ids %s", u.UID, u.SubUID)
		d.step("applying sysctls")
		if _, err := host.ApplySysctls(); err != nil {
			return err
		}
		if err := host.EnsureTun(); err != nil {
			return err
		}
		if err := host.EnsureModulesDir(); err != nil {
			return err
		}
		for _, dir := range []string{paths.RunDir, paths.State, paths.LogDir, paths.KubernetesDir} {
			if err := host.MakeDir(dir, 0o755, u.UID, u.GID); err != nil {
				return err
			}
		}
		// The local volumes' directory, in LibDir, which reset removes but for the volumes of
		// Retain claims.
		if err := host.MakeDir(paths.LibDir, 0o755, 0, 0); err != nil {
			return err
		}
		// The watch's state and textfile (u7s check all), root's.
		if err := host.MakeDir(paths.WatchDir, 0o755, 0, 0); err != nil {
			return err
		}
		if err := localpath.Prepare(paths.VolumesDir, u.UID, u.GID); err != nil {
			return err
		}
		// Another directory is bound on paths.VolumesDir inside the node (namespace-init).
		if dir := localStorageDir(d.O.LocalStorageDir); dir != "" {
			d.detail("local volumes in %s (at %s inside the node)", dir, paths.VolumesDir)
			// Recorded (when u7s makes it) so that reset removes it, unless volumes stay.
			if err := host.RecordCreated(dir); err != nil {
				return err
			}
			if err := localpath.Prepare(dir, u.UID, u.GID); err != nil {
				return err
			}
		}
		return os.MkdirAll(paths.ConfigDir, 0o755)
	})
}

// localStorageDir is node.json's LocalStorageDir for --local-storage-dir: "" for the default.
func localStorageDir(flag string) string {
	if flag == "" || filepath.Clean(flag) == paths.VolumesDir {
		return ""
	}
	return filepath.Clean(flag)
}

// cgroupsPhase chooses the cgroup mode and, on v1, delegates the node's subtrees.
func cgroupsPhase() workflow.Phase {
	return phase("cgroups", "Choose the cgroup mode; on cgroup v1 delegate a subtree of every hierarchy to u7s-admin", changesHost, func(d *Data) error {
		o, err := d.Owner()
		if err != nil {
			return err
		}
		d.step("choosing the cgroup mode")
		mode, err := cgroups.Choose(d.O.CgroupMode, service.Systemd(), o.UID, o.GID)
		if err != nil {
			return err
		}
		d.cgroup = mode
		d.detail("%s: %s", mode, mode.Description())
		return nil
	})
}

// configPhase writes the node's configuration and its kubeadm documents.
func configPhase() workflow.Phase {
	return phase("config", "Write the node's configuration (/etc/u7s/node.json), its kubeadm configuration and kubelet patches", changesHostOrSays, func(d *Data) error {
		return d.writeConfig()
	})
}

func (d *Data) writeConfig() error {
	name, err := d.nodeName()
	if err != nil {
		return err
	}
	addr := d.O.AdvertiseAddress
	if addr == "" {
		ip, err := host.PrimaryIPv4()
		if err != nil {
			return err
		}
		addr = ip.String()
	}
	res, err := d.resolution()
	if err != nil {
		return err
	}
	if err := d.networks(); err != nil {
		return err
	}
	n := &config.Node{
		Role:                 d.role(),
		NodeName:             name,
		AdvertiseAddress:     addr,
		APIServerPort:        d.O.BindPort,
		Registry:             res.Value,
		ImageRepository:      res.ImageRepository(),
		PauseImage:           res.PauseImage(version.Pinned),
		FlannelImage:         res.FlannelImage(version.Pinned),
		NetpolImage:          res.NetpolImage(version.Pinned),
		Insecure:             registry.InsecureRegistries(res),
		Ports:                config.RolePorts(d.role(), d.O.BindPort),
		NodePortForwarding:   !d.O.NoNodePortForwarding,
		ScheduleWorkloads:    d.O.ScheduleWorkloads,
		RebootWindow:         d.O.RebootWindow,
		NoCoordinatedReboots: d.O.NoCoordinatedReboots,
		NoLocalStorage:       d.O.NoLocalStorage,
		NoMetricsServer:      d.O.NoMetricsServer,
		LocalStorageDir:      localStorageDir(d.O.LocalStorageDir),
		Cgroup:               d.cgroup,
		Service:              service.Systemd(),
	}
	if d.O.Timeout != config.DefaultStepTimeout {
		n.StepTimeout = d.O.Timeout.String()
	}
	if n.Cgroup == "" {
		n.Cgroup = cgroups.None // --dry-run, or the cgroups phase skipped
	}
	var docs []byte
	n.PodCIDR, n.ServiceCIDR = d.pod.String(), d.svc.String()
	nsnet, err := host.ChooseNamespaceNetwork(d.pod, d.svc)
	if err != nil {
		return err
	}
	n.NamespaceNetwork = nsnet.String()
	d.detail("the node's namespace network (slirp4netns): %s, clear of the host's networks, the pods' and the Services'", nsnet)
	docs, err = d.bootstrap.documents(d, n)
	if err != nil {
		return err
	}
	d.node, d.docs = n, docs
	if d.O.DryRun {
		d.step("[dry-run] the node would be started and kubeadm %s run with:\n%s", d.Flow, docs)
		return nil
	}
	if err := host.RecordCreated(config.Path, kubeadmConfigFile(d.Flow), kubeadm.PatchesDir); err != nil {
		return err
	}
	if d.O.ImageSigningKey != "" {
		if err := d.installSigningKey(n); err != nil {
			return err
		}
	}
	if n.Role == config.ControlPlane {
		if err := d.writeControlPlaneFiles(); err != nil {
			return err
		}
	}
	if err := n.Save(); err != nil {
		return err
	}
	if err := kubeadm.WritePatches(n); err != nil {
		return err
	}
	// The file holds the bootstrap token: root's only (kubeadm reads it inside the namespace
	// as the namespace's root, which is u7s-admin: it gets it on its standard input instead).
	return writeSecretFile(kubeadmConfigFile(d.Flow), docs)
}

// installSigningKey copies the site's public key where the node's containers policy names
// it: from now on the node runs only images signed with it.
func (d *Data) installSigningKey(n *config.Node) error {
	b, err := os.ReadFile(d.O.ImageSigningKey)
	if err != nil {
		return err
	}
	if err := host.RecordCreated(paths.ImageSigningKey); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(paths.ImageSigningKey, b, 0o644); err != nil {
		return err
	}
	n.ImageSigningKey = paths.ImageSigningKey
	d.detail("images must be signed with %s (copied to %s)", d.O.ImageSigningKey, paths.ImageSigningKey)
	return nil
}

// writeControlPlaneFiles writes the API server's policy files and the Secrets encryption key:
// a new key on init, the cluster's on a control plane that joins.
func (d *Data) writeControlPlaneFiles() error {
	o, err := d.Owner()
	if err != nil {
		return err
	}
	if d.encryption == nil {
		if d.encryption, err = controlplane.NewEncryption(); err != nil {
			return err
		}
	}
	if err := host.RecordCreated(paths.ControlPlaneDir); err != nil {
		return err
	}
	d.step("writing the API server's audit policy, Pod Security defaults, anonymous-access rule and Secrets encryption key (%s)", paths.ControlPlaneDir)
	return controlplane.WriteFiles(d.encryption, o.UID, o.GID)
}

// kubeadmConfigFile is where the flow's kubeadm configuration is kept.
func kubeadmConfigFile(flow string) string {
	return paths.ConfigDir + "/kubeadm-" + flow + ".yaml"
}
