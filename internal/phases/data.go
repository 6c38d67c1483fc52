// Package phases holds u7s's flows as pipelines of named phases on kubeadm's workflow runner
// (linked from k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow): init and join
// (flows.go lists them), start and reset. Each phase is a small function in this package
// that calls the package doing the work (host, cgroups, kubeadm, service, flannel, kube).
// `u7s init phase --help` lists them; --skip-phases leaves some out.
package phases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/registry"
)

// Options are the flags of init and join.
type Options struct {
	// Both.
	NodeName             string
	AdvertiseAddress     string
	BindPort             int
	DryRun               bool
	Verbosity            int
	CgroupMode           string // "auto" or "none"
	KeepOnFailure        bool
	NoNodePortForwarding bool
	ScheduleWorkloads    bool
	Registry             registry.Source
	// ImageSigningKey: run only images signed with this public key (u7s images keygen).
	ImageSigningKey string
	// Coordinated reboots.
	RebootWindow         string
	NoCoordinatedReboots bool
	// LocalStorageDir: where the node keeps its local volumes (config.Node.LocalStorageDir).
	LocalStorageDir string
	// Timeout is the longest one step may take (config.Node.StepTimeout).
	Timeout time.Duration

	// init.
	PodCIDR              string
	ServiceCIDR          string
	ControlPlaneEndpoint string
	KubernetesVersion    string
	UploadCerts          bool
	NoLocalStorage       bool
	NoMetricsServer      bool

	// join.
	Endpoint       string
	Token          string
	CACertHashes   []string
	ControlPlane   bool
	CertificateKey string
}

// Flow names.
const (
	FlowInit = "init"
	FlowJoin = "join"
)

// Data is what the phases of one run share.
type Data struct {
	Ctx context.Context
	printer
	Flow string
	O    Options
	// bootstrap is what init or join does differently in the phases they share.
	bootstrap bootstrap

	pod, svc netip.Prefix
	res      *registry.Resolution
	node     *config.Node
	owner    node.Owner
	docs     []byte // the kubeadm configuration
	join     kubeadm.JoinOptions
	token    string // init: the bootstrap token it creates
	certKey  string // the certificate key of uploaded certificates
	// encryption is the cluster's Secrets EncryptionConfiguration: made by init, received from
	// the cluster by a control plane that joins.
	encryption []byte
	cgroup     cgroups.Mode
	// Changed is set when a phase that changes the host starts (its effect): a failure from
	// then on is undone.
	Changed bool
}

// NewData starts a run of flow with the flags.
func NewData(ctx context.Context, flow string, o Options, out io.Writer) (*Data, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("u7s %s must run as root: try sudo u7s %s", flow, flow)
	}
	return &Data{Ctx: ctx, printer: printer{out}, Flow: flow, O: o, bootstrap: bootstraps[flow]}, nil
}

// Node is the node's configuration: the one this run made, or the saved one (a phase run
// alone, such as `u7s init phase upload-certs`).
func (d *Data) Node() (*config.Node, error) {
	if d.node != nil {
		return d.node, nil
	}
	n, err := config.Load()
	if err != nil {
		return nil, err
	}
	d.node = n
	return n, nil
}

// Owner is the node's user.
func (d *Data) Owner() (node.Owner, error) {
	if d.owner.UID != 0 {
		return d.owner, nil
	}
	o, err := node.LookupOwner()
	if err != nil {
		return o, err
	}
	d.owner = o
	return o, nil
}

// effect is what a phase of init, join or reset does to the host: whether a dry run skips it,
// and whether a failure from it on is undone. Declared with the phase, so that no phase sets
// Data.Changed by hand.
type effect int

const (
	// readOnly changes nothing (checks): it runs in a dry run too.
	readOnly effect = iota
	// changesHost changes the host or the cluster: a dry run skips it; a run that fails from it
	// on is undone.
	changesHost
	// changesHostOrSays changes the host, and in a dry run says what it would do (it reads
	// O.DryRun itself).
	changesHostOrSays
	// needsNode changes nothing, but needs the node a change started: a dry run skips it.
	needsNode
)

// effectData is a flow's data as phaseOf sees it: begin is called as a phase of effect e
// starts, and says whether the phase runs.
type effectData interface{ begin(e effect) bool }

// phaseOf is a workflow phase of effect e whose Run takes D: its flow's data, or the interface
// of what a phase that several flows share needs.
func phaseOf[D effectData](name, short string, e effect, run func(D) error) workflow.Phase {
	return workflow.Phase{Name: name, Short: short, Run: func(c workflow.RunData) error {
		d, ok := c.(D)
		if !ok {
			return fmt.Errorf("internal error: phase %s run with %T", name, c)
		}
		if !d.begin(e) {
			return nil
		}
		return run(d)
	}}
}

// phase is a workflow phase of init or join whose Run takes the run's Data; e says what it
// does to the host.
func phase(name, short string, e effect, run func(*Data) error) workflow.Phase {
	return phaseOf(name, short, e, run)
}

// begin records the effect (enter), and skips in a dry run what changes the host or needs
// the node.
func (d *Data) begin(e effect) bool {
	d.enter(e)
	return !d.O.DryRun || e != changesHost && e != needsNode
}

func (d *Data) context() context.Context { return d.Ctx }

// enter records that a phase of effect e runs: once one that changes the host ran, a failure
// is undone.
func (d *Data) enter(e effect) {
	if !d.O.DryRun && (e == changesHost || e == changesHostOrSays) {
		d.Changed = true
	}
}

// asData is the type assertion every phase starts with.
func asData(c any) (*Data, error) {
	d, ok := c.(*Data)
	if !ok {
		return nil, errors.New("internal error: phase run with the wrong data")
	}
	return d, nil
}

// problems joins flag problems into one error.
func problems(ps []string) error {
	if len(ps) == 0 {
		return nil
	}
	return fmt.Errorf("bad flags:\n  %s", strings.Join(ps, "\n  "))
}

// ControlPlane is this host's node when it is a control plane and the caller is root: what
// every operation on a control plane's etcd or certificates needs. what names the operation.
func ControlPlane(what string) (*config.Node, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%s must run as root on a control plane", what)
	}
	n, err := config.Load()
	if err != nil {
		return nil, err
	}
	if n.Role != config.ControlPlane {
		return nil, fmt.Errorf("this node is a %s: %s runs on a control plane", n.Role, what)
	}
	return n, nil
}
