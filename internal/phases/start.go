package phases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/node"
)

// nodeData is what the phases that start a node and wait for it take, shared by init, join
// and start: the node's configuration and user, the run's context and its printer.
type nodeData interface {
	effectData
	context() context.Context
	Node() (*config.Node, error)
	Owner() (node.Owner, error)
	step(format string, args ...any)
	detail(format string, args ...any)
	out() io.Writer
}

// StartData is the run of u7s start: a node made before, started again. Nothing it does is
// undone on a failure: the node stays as far as it got, and u7s start may run again.
type StartData struct {
	Ctx context.Context
	printer

	node  *config.Node
	owner node.Owner
}

// NewStartData loads the node to start; it changes nothing.
func NewStartData(ctx context.Context, out io.Writer) (*StartData, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("u7s start must run as root: try sudo u7s start")
	}
	n, err := config.Load()
	if err != nil {
		return nil, fmt.Errorf("no node to start (u7s init or join makes one): %w", err)
	}
	o, err := node.LookupOwner()
	if err != nil {
		return nil, err
	}
	return &StartData{Ctx: ctx, printer: printer{out}, node: n, owner: o}, nil
}

func (d *StartData) begin(effect) bool           { return true }
func (d *StartData) context() context.Context    { return d.Ctx }
func (d *StartData) Node() (*config.Node, error) { return d.node, nil }
func (d *StartData) Owner() (node.Owner, error)  { return d.owner, nil }
