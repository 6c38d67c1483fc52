package phases

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/controlplane"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/localpath"
	"github.com/u7s/u7s/internal/maintenance"
	"github.com/u7s/u7s/internal/registry"
	"github.com/u7s/u7s/internal/release"
	"github.com/u7s/u7s/internal/signing"
	"github.com/u7s/u7s/internal/upgrade"
)

// preflightPhase checks everything before the host changes: flags, the registry and its
// images, the cluster (join: endpoint, token, CA hash, certificate key) and the host.
func preflightPhase() workflow.Phase {
	return phase("preflight", "Check flags, registry, images, cluster and host; change nothing", readOnly, func(d *Data) error {
		return d.preflight()
	})
}

func (d *Data) preflight() error {
	if err := d.checkFlags(); err != nil {
		return err
	}
	d.step("resolving the image registry")
	res, err := d.resolution()
	if err != nil {
		return err
	}
	d.detail("U7S_REGISTRY: %s", res.Value)
	if err := checkImages(d.Ctx, registry.Refs(res.Images()), d.O.ImageSigningKey, "the node needs", "or choose another registry with "+registry.EnvVar, d.step); err != nil {
		return err
	}
	if err := d.bootstrap.cluster(d); err != nil {
		return fmt.Errorf("%w\nnothing was changed on this host", err)
	}
	d.step("checking the host")
	if err := host.Preflight(host.PreflightOptions{
		APIServerPort: d.O.BindPort, Worker: d.role() == config.Worker, PodCIDR: d.pod, ServiceCIDR: d.svc,
	}); err != nil {
		return fmt.Errorf("the host is not ready; nothing was changed:\n%w", err)
	}
	return nil
}

// checkImages checks, before anything changes, that the registry has every image of refs (what
// they are for: "the node needs", "of v1.36.3") and, with key, that each is signed with it, as
// the node's policy will ask; orElse is the other way out the message names. The one image and
// signature check of init, join and upgrade.
func checkImages(ctx context.Context, refs []string, key, what, orElse string, step func(string, ...any)) error {
	step("checking that the registry has all %d images %s", len(refs), what)
	missing, err := registry.Check(ctx, refs)
	if err != nil {
		return fmt.Errorf("checking the images: %w", err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("the registry lacks %d image(s) %s; nothing was changed on this host:\n  %s\npush them (u7s images load, or u7s images build --push) %s",
			len(missing), what, strings.Join(missing, "\n  "), orElse)
	}
	if key == "" {
		return nil
	}
	step("checking that every image is signed with %s", key)
	refused, err := signing.Verify(ctx, refs, key)
	if err != nil {
		return fmt.Errorf("checking the images' signatures: %w", err)
	}
	if len(refused) > 0 {
		return fmt.Errorf("the node would refuse %d image(s) %s, not signed with %s; nothing was changed on this host:\n  %s\nsign them with that key's private half (u7s images sign --sign-key FILE REF..., or build and push with --sign-key) or give the key they are signed with",
			len(refused), what, key, strings.Join(refused, "\n  "))
	}
	return nil
}

// networks makes sure the pods' and the Services' networks are known: init's flags, checked,
// or the cluster's (join: discovery reads them). Preflight does it; when it is skipped, the first
// phase that needs them does.
func (d *Data) networks() error {
	if d.pod.IsValid() && d.svc.IsValid() {
		return nil
	}
	return d.bootstrap.networks(d)
}

// resolution is the image registry of the run, resolved once (by preflight, or by the first
// phase that needs it when preflight is skipped).
func (d *Data) resolution() (registry.Resolution, error) {
	if d.res == nil {
		res, err := registry.Resolve(d.O.Registry)
		if err != nil {
			return res, err
		}
		d.res = &res
	}
	return *d.res, nil
}

func (d *Data) role() config.Role { return d.bootstrap.role(d.O) }

// checkFlags validates the flags of init or join.
func (d *Data) checkFlags() error {
	o := d.O
	var ps []string
	if o.BindPort < 1 || o.BindPort > 65535 {
		ps = append(ps, fmt.Sprintf("--apiserver-bind-port %d is not a port (1-65535)", o.BindPort))
	}
	if o.AdvertiseAddress != "" {
		if a, err := netip.ParseAddr(o.AdvertiseAddress); err != nil || !a.Is4() {
			ps = append(ps, fmt.Sprintf("--apiserver-advertise-address %q is not an IPv4 address", o.AdvertiseAddress))
		} else if !host.HasAddress(a) {
			ps = append(ps, fmt.Sprintf("--apiserver-advertise-address %s is not an address of this host (ip -4 addr lists them)", a))
		}
	}
	if o.NodeName != "" {
		if strings.Trim(o.NodeName, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "" || len(o.NodeName) > 63 {
			ps = append(ps, fmt.Sprintf("--node-name %q: want a lower-case DNS name (letters, digits, '-', '.')", o.NodeName))
		}
	}
	if _, err := maintenance.ParseWindow(o.RebootWindow); err != nil {
		ps = append(ps, "--reboot-window: "+err.Error())
	}
	if o.ImageSigningKey != "" {
		if err := signing.CheckPublicKey(o.ImageSigningKey); err != nil {
			ps = append(ps, fmt.Sprintf("--image-signing-key: %v", err))
		}
	}
	if o.Timeout <= 0 {
		ps = append(ps, fmt.Sprintf("--timeout %s: want a positive duration such as 10m (longer on a very slow host)", o.Timeout))
	}
	if err := localpath.CheckDir(o.LocalStorageDir); err != nil {
		ps = append(ps, "--local-storage-dir: "+err.Error())
	}
	switch o.CgroupMode {
	case "auto", "none":
	default:
		ps = append(ps, fmt.Sprintf("--cgroup-mode %q: want auto or none", o.CgroupMode))
	}
	ps = append(ps, d.bootstrap.checkFlags(d)...)
	return problems(ps)
}

// checkEndpoint: HOST or HOST:PORT (join: a port is needed).
func checkEndpoint(ep string, portOptional bool) error {
	h, p, err := net.SplitHostPort(ep)
	if err != nil {
		if portOptional && !strings.Contains(ep, ":") {
			return nil
		}
		return fmt.Errorf("%q: want HOST:PORT, e.g. 192.0.2.10:6443", ep)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: %q is not a port", ep, p)
	}
	if h == "" {
		return fmt.Errorf("%q: no host", ep)
	}
	return nil
}

// discover checks the cluster a node joins: the endpoint answers, the token and the CA hash
// are right, and a control plane's certificate key decrypts the uploaded certificates.
func (d *Data) discover() error {
	d.join = kubeadm.JoinOptions{
		Endpoint: d.O.Endpoint, Token: d.O.Token, CACertHashes: d.O.CACertHashes,
		ControlPlane: d.O.ControlPlane, CertificateKey: d.O.CertificateKey,
	}
	d.step("checking the cluster at %s (token, CA hash)", d.O.Endpoint)
	conn, err := net.DialTimeout("tcp", d.O.Endpoint, 5*time.Second)
	if err != nil {
		return fmt.Errorf("cannot reach the cluster's API at %s: %v: check the address and port, that the control plane runs, and the firewall", d.O.Endpoint, err)
	}
	conn.Close()
	// The cluster-info's signature for a new token comes from the controller-manager's
	// bootstrap signer a moment after the token: on a loaded control plane a join right after
	// init or token create must wait for it (a wrong token then takes this long to be refused).
	cs, err := kubeadm.Discover(d.Ctx, d.join, 90*time.Second)
	if err != nil {
		return err
	}
	cc, err := kubeadm.ClusterConfiguration(d.Ctx, cs)
	if err != nil {
		return err
	}
	if err := upgrade.CheckJoin(cc.KubernetesVersion, release.Carried()); err != nil {
		return err
	}
	pod, svc, err := kubeadm.Networks(cc)
	if err != nil {
		return err
	}
	if d.pod, err = netip.ParsePrefix(pod); err != nil {
		return fmt.Errorf("the cluster's pod subnet %q: %w", pod, err)
	}
	if d.svc, err = netip.ParsePrefix(svc); err != nil {
		return fmt.Errorf("the cluster's Service subnet %q: %w", svc, err)
	}
	if d.O.ControlPlane {
		d.step("checking the certificate key")
		if err := kubeadm.CheckCertificateKey(d.Ctx, cs, d.O.CertificateKey); err != nil {
			return err
		}
		if d.encryption, err = kubeadm.DownloadEncryption(d.Ctx, cs, d.O.CertificateKey); err != nil {
			return err
		}
		if err := controlplane.CheckEncryption(d.encryption); err != nil {
			return fmt.Errorf("the cluster's Secrets encryption key: %w", err)
		}
	}
	return nil
}

// hostname is the node name: --node-name, else the host's name in lower case.
func (d *Data) nodeName() (string, error) {
	if d.O.NodeName != "" {
		return d.O.NodeName, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", err
	}
	return strings.ToLower(h), nil
}
