package phases

import (
	"context"
	"errors"
	"io"

	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/node"
)

// CertsRenewData is the run of u7s certs renew: the flow CertsRenew's phases share.
type CertsRenewData struct {
	Ctx context.Context
	// What is kubeadm's name of the certificates to renew: all, apiserver, admin.conf, ...
	What string
	printer

	node *config.Node
}

// NewCertsRenewData loads the control plane whose certificates are renewed; it changes nothing.
func NewCertsRenewData(ctx context.Context, what string, out io.Writer) (*CertsRenewData, error) {
	n, err := ControlPlane("u7s certs renew")
	if err != nil {
		return nil, err
	}
	return &CertsRenewData{Ctx: ctx, What: what, printer: printer{out}, node: n}, nil
}

func certsPhase(name, short string, run func(*CertsRenewData) error) workflow.Phase {
	return typedPhase(name, short, run)
}

// certsRenewPhase renews inside the running node: kubeadm renews from the cluster's
// configuration, which it reads from the API server.
func certsRenewPhase() workflow.Phase {
	return certsPhase("renew", "Renew the certificates inside the node (kubeadm certs renew)", func(d *CertsRenewData) error {
		if node.SupervisorPID() == 0 {
			return errors.New("the node is not running: u7s start first (kubeadm renews from the cluster's configuration)")
		}
		d.step("renewing %s (kubeadm certs renew, inside the node)", d.What)
		return node.Kubeadm("certs", "renew", d.What)
	})
}

// certsRestartPhase restarts the node: the static pods read their certificates only when they
// start.
func certsRestartPhase() workflow.Phase {
	return certsPhase("restart", "Restart the node so that every component uses the renewed certificates", func(d *CertsRenewData) error {
		d.step("restarting the node so that the control plane uses the renewed certificates")
		return Restart(d.Ctx, d.node, d.Out, "")
	})
}
