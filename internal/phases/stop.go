package phases

import (
	"context"
	"fmt"
	"io"

	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/service"
	"github.com/u7s/u7s/systemd"
)

// Stop stops the node, keeping its state for u7s start (u7s stop).
func Stop() []workflow.Phase {
	return []workflow.Phase{stopServicePhase(), stopSupervisorPhase()}
}

// StopData is the run of u7s stop: the flow Stop's phases share.
type StopData struct {
	Ctx context.Context
	printer

	node *config.Node
}

// NewStopData loads the node to stop; it changes nothing.
func NewStopData(ctx context.Context, out io.Writer) (*StopData, error) {
	n, err := config.Load()
	if err != nil {
		return nil, err
	}
	return &StopData{Ctx: ctx, printer: printer{out}, node: n}, nil
}

// stopServicePhase stops the systemd unit of a node that runs as a service: stopped underneath
// it, systemd would start the supervisor again.
func stopServicePhase() workflow.Phase {
	return typedPhase("service", "Stop the node's systemd unit (a node that runs as a service)", func(d *StopData) error {
		if !d.node.Service || !service.Systemd() {
			return nil
		}
		d.step("stopping %s", systemd.Node)
		if err := service.Stop(d.Ctx, systemd.Node); err != nil {
			return fmt.Errorf("stopping %s: %w", systemd.Node, err)
		}
		return nil
	})
}

// stopSupervisorPhase ends the supervisor, and the namespace with every pod: what the unit
// left, or a node started by u7s start without systemd.
func stopSupervisorPhase() workflow.Phase {
	return typedPhase("supervisor", "End the supervisor: the kubelet, cri-o and every pod stop with the namespace", func(d *StopData) error {
		if err := node.Stop(node.StopTimeout); err != nil {
			return fmt.Errorf("stopping the supervisor: %w", err)
		}
		d.step("node stopped")
		return nil
	})
}
