package phases

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/version"
)

// bootstrap is what init and join do differently inside the phases they share, chosen once by
// the flow (NewData) rather than by the flow's name inside a phase: kubeadm keeps its
// phases/init and phases/join apart the same way.
type bootstrap interface {
	// checkFlags returns the problems of the flow's own flags (checkFlags checks the shared ones).
	checkFlags(d *Data) []string
	// cluster checks the cluster before the host changes: join's endpoint, token, CA hash and
	// certificate key; init has no cluster yet.
	cluster(d *Data) error
	// networks learns the pods' and the Services' networks: init's flags, the cluster's for join.
	networks(d *Data) error
	// role is the node's role.
	role(o Options) config.Role
	// documents makes kubeadm's configuration for node n, and sets n's API endpoint.
	documents(d *Data, n *config.Node) ([]byte, error)
}

// bootstraps are the flows that make a node.
var bootstraps = map[string]bootstrap{FlowInit: initFlow{}, FlowJoin: joinFlow{}}

type initFlow struct{}

func (initFlow) checkFlags(d *Data) []string {
	o := d.O
	var ps []string
	if o.KubernetesVersion != "" && o.KubernetesVersion != version.Pinned.Kubernetes {
		ps = append(ps, fmt.Sprintf("--kubernetes-version %s: this u7s runs Kubernetes %s only; drop the flag or install the u7s of that version",
			o.KubernetesVersion, version.Pinned.Kubernetes))
	}
	var err error
	if d.pod, err = netip.ParsePrefix(o.PodCIDR); err != nil || !d.pod.Addr().Is4() {
		ps = append(ps, fmt.Sprintf("--pod-network-cidr %q is not an IPv4 CIDR like 10.244.0.0/16", o.PodCIDR))
	} else if d.pod.Bits() > 24 {
		ps = append(ps, fmt.Sprintf("--pod-network-cidr %s is too small: flannel gives every node a /24; use /16", d.pod))
	}
	if d.svc, err = netip.ParsePrefix(o.ServiceCIDR); err != nil || !d.svc.Addr().Is4() {
		ps = append(ps, fmt.Sprintf("--service-cidr %q is not an IPv4 CIDR like 10.96.0.0/12", o.ServiceCIDR))
	}
	if o.ControlPlaneEndpoint != "" {
		if err := checkEndpoint(o.ControlPlaneEndpoint, true); err != nil {
			ps = append(ps, "--control-plane-endpoint "+err.Error())
		}
	}
	return ps
}

func (initFlow) cluster(*Data) error { return nil }

func (initFlow) networks(d *Data) error { return d.checkFlags() }

func (initFlow) role(Options) config.Role { return config.ControlPlane }

func (initFlow) documents(d *Data, n *config.Node) ([]byte, error) {
	n.Endpoint = d.O.ControlPlaneEndpoint
	if n.Endpoint == "" {
		n.Endpoint = fmt.Sprintf("%s:%d", n.AdvertiseAddress, d.O.BindPort)
	}
	var err error
	if d.token == "" {
		if d.token, err = kubeadm.NewToken(); err != nil {
			return nil, err
		}
	}
	if d.O.UploadCerts && d.certKey == "" {
		if d.certKey, err = kubeadm.NewCertificateKey(); err != nil {
			return nil, err
		}
	}
	return kubeadm.InitDocuments(kubeadm.InitOptions{Node: n, ControlPlaneEndpoint: d.O.ControlPlaneEndpoint,
		Token: d.token, CertificateKey: d.certKey})
}

type joinFlow struct{}

func (joinFlow) checkFlags(d *Data) []string {
	o := d.O
	var ps []string
	if o.Endpoint == "" {
		ps = append(ps, "the API server endpoint is missing: u7s join HOST:PORT --token ... (as printed by u7s init or u7s token create --print-join-command)")
	} else if err := checkEndpoint(o.Endpoint, false); err != nil {
		ps = append(ps, "endpoint "+err.Error())
	}
	if err := kubeadm.ValidToken(o.Token); err != nil {
		ps = append(ps, err.Error())
	}
	if len(o.CACertHashes) == 0 {
		ps = append(ps, "--discovery-token-ca-cert-hash is missing: it pins the cluster's CA (sha256:..., printed with the join command)")
	}
	for _, h := range o.CACertHashes {
		if hex, ok := strings.CutPrefix(h, "sha256:"); !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
			ps = append(ps, fmt.Sprintf("--discovery-token-ca-cert-hash %q: want sha256: and 64 hex digits", h))
		}
	}
	if o.ControlPlane && o.CertificateKey == "" {
		ps = append(ps, "--control-plane needs --certificate-key: the key printed by u7s init --upload-certs, or a new one from u7s init phase upload-certs --upload-certs on a control plane")
	}
	if !o.ControlPlane && o.CertificateKey != "" {
		ps = append(ps, "--certificate-key is for --control-plane only")
	}
	if o.CertificateKey != "" && (len(o.CertificateKey) != 64 || strings.Trim(o.CertificateKey, "0123456789abcdef") != "") {
		ps = append(ps, "--certificate-key: want 64 hex digits")
	}
	return ps
}

func (joinFlow) cluster(d *Data) error { return d.discover() }

func (joinFlow) networks(d *Data) error { return d.discover() }

func (joinFlow) role(o Options) config.Role {
	if o.ControlPlane {
		return config.ControlPlane
	}
	return config.Worker
}

func (joinFlow) documents(d *Data, n *config.Node) ([]byte, error) {
	n.Endpoint = d.O.Endpoint
	d.join.Node = n
	return kubeadm.JoinDocuments(d.join)
}
