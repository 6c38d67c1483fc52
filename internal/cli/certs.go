package cli

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/phases"
)

func newCertsCommand() *cobra.Command {
	c := &cobra.Command{Use: "certs", Short: "The control plane's certificates: expiry and renewal (kubeadm's, inside the node; as root)"}
	c.AddCommand(&cobra.Command{
		Use:   "check-expiration",
		Short: "When each certificate and kubeconfig of this control plane expires (kubeadm certs check-expiration)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if _, err := phases.ControlPlane("u7s certs check-expiration"); err != nil {
				return err
			}
			return kubeadmInNode("certs", "check-expiration")
		},
	})
	renew := &cobra.Command{
		Use:   "renew all|NAME",
		Short: "Renew certificates (kubeadm certs renew), then restart the node so that every component uses them",
		Long: `Runs kubeadm certs renew inside the node (NAME as kubeadm names them: apiserver, admin.conf,
etcd-server, ...; all renews every one, admin.conf included), then restarts the node: the
static pods read their certificates only when they start.`,
		Args: cobra.ExactArgs(1),
	}
	bindPhases(renew, phases.CertsRenew(), func(cmd *cobra.Command, args []string) (*phases.CertsRenewData, error) {
		if len(args) == 0 {
			return nil, errors.New("give all or a certificate's name (kubeadm's: apiserver, admin.conf, ...)")
		}
		return phases.NewCertsRenewData(cmd.Context(), args[0], cmd.OutOrStdout())
	}, nil)
	c.AddCommand(renew)
	return c
}

// kubeadmInNode runs the linked kubeadm inside the node's namespace as its root.
func kubeadmInNode(args ...string) error { return node.Kubeadm(args...) }
