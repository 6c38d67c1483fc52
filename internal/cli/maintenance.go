package cli

import (
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/maintenance"
	"github.com/u7s/u7s/internal/paths"
)

func init() { register(newNodeMaintenanceCommand) }

// maintenanceMarker survives the reboot it records (not under /run).
const maintenanceMarker = paths.MaintenanceMarker

func newNodeMaintenanceCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "node-maintenance",
		Short:  "One step of coordinated reboots (as root; u7s-maintenance.timer runs it every minute)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return errors.New("u7s node-maintenance must run as root: it reboots the host")
			}
			n, err := config.Load()
			if err != nil {
				return err
			}
			if n.NoCoordinatedReboots {
				return nil
			}
			a, err := newAgent(n)
			if err != nil {
				return err
			}
			st, err := a.Step(c.Context())
			fmt.Fprintf(c.OutOrStdout(), "maintenance: %s\n", st)
			return err
		},
	}
}

func newAgent(n *config.Node) (*maintenance.Agent, error) {
	w, err := maintenance.ParseWindow(n.RebootWindow)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.Path, err)
	}
	cs, err := kube.Node()
	if err != nil {
		return nil, err
	}
	return &maintenance.Agent{
		Client: cs, Node: n.NodeName, Sentinel: maintenance.RebootRequired, Marker: maintenanceMarker, Window: w,
		Reboot: func() error { return exec.Command("systemctl", "reboot").Run() },
		Logf:   log.Printf,
	}, nil
}

// maintenanceStatus is u7s status's line about coordinated reboots.
func maintenanceStatus(n *config.Node) string {
	switch {
	case n.NoCoordinatedReboots:
		return "coordinated reboots off"
	case exists(maintenanceMarker):
		return string(maintenance.Returning)
	case exists(maintenance.RebootRequired):
		return "reboot pending (" + maintenance.RebootRequired + "): waiting for the cluster-wide lock and the window " + orAny(n.RebootWindow)
	}
	return "no reboot pending (window " + orAny(n.RebootWindow) + ")"
}

func orAny(w string) string {
	if w == "" {
		return "any time"
	}
	return w
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
