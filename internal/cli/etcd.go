package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/kubeadm"
)

func init() { register(newEtcdCommand) }

func newEtcdCommand() *cobra.Command {
	c := &cobra.Command{Use: "etcd", Short: "The cluster's etcd, from a control plane (as root)"}
	c.AddCommand(&cobra.Command{
		Use:   "members",
		Short: "List the stacked etcd members: name and peer URL",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return errors.New("u7s etcd members must run as root on a control plane")
			}
			ms, err := kubeadm.EtcdMembers()
			if err != nil {
				return err
			}
			for _, m := range ms {
				fmt.Fprintln(c.OutOrStdout(), m)
			}
			return nil
		},
	})
	return c
}
