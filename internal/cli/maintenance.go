package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/maintenance"
)

func newNodeMaintenanceCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "node-maintenance",
		Short:  "One step of coordinated reboots (as root; u7s-maintenance.timer runs it every 20 s while a reboot is due or under way)",
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
			a, err := maintenance.NodeAgent(n)
			if err != nil {
				return err
			}
			st, err := a.Step(c.Context())
			fmt.Fprintf(c.OutOrStdout(), "maintenance: %s\n", st)
			return err
		},
	}
}
