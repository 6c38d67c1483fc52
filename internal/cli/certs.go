package cli

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/certs"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/phases"
)

func init() { register(newCertsCommand) }

func newCertsCommand() *cobra.Command {
	c := &cobra.Command{Use: "certs", Short: "The control plane's certificates: expiry and renewal (kubeadm's, inside the node; as root)"}
	c.AddCommand(&cobra.Command{
		Use:   "check-expiration",
		Short: "When each certificate and kubeconfig of this control plane expires (kubeadm certs check-expiration)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if _, err := controlPlaneNode("u7s certs check-expiration"); err != nil {
				return err
			}
			return kubeadmInNode("certs", "check-expiration")
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "renew all|NAME",
		Short: "Renew certificates (kubeadm certs renew), then restart the node so that every component uses them",
		Long: `Runs kubeadm certs renew inside the node (NAME as kubeadm names them: apiserver, admin.conf,
etcd-server, ...; all renews every one, admin.conf included), then restarts the node: the
static pods read their certificates only when they start.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			n, err := controlPlaneNode("u7s certs renew")
			if err != nil {
				return err
			}
			if node.SupervisorPID() == 0 {
				return errors.New("the node is not running: u7s start first (kubeadm renews from the cluster's configuration)")
			}
			if err := kubeadmInNode("certs", "renew", args[0]); err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), "[u7s] restarting the node so that the control plane uses the renewed certificates")
			return phases.Restart(c.Context(), n, c.OutOrStdout())
		},
	})
	return c
}

// kubeadmInNode runs the linked kubeadm inside the node's namespace as its root.
func kubeadmInNode(args ...string) error {
	o, err := node.LookupOwner()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		exe = paths.Binary
	}
	return node.Run(o, nil, os.Stdout, os.Stderr, append([]string{exe, "kubeadm"}, args...)...)
}

// certWarnings is what u7s status says about certificates that expire within 30 days.
func certWarnings(now time.Time) []string {
	cs, err := certs.Expiry(paths.KubernetesDir)
	if err != nil {
		return []string{fmt.Sprintf("cannot read the certificates: %v", err)}
	}
	var w []string
	for _, c := range certs.Within(cs, now, 30*24*time.Hour) {
		w = append(w, fmt.Sprintf("%s (%s) expires %s: u7s certs renew all", c.Path, c.Subject, c.NotAfter.Format(time.RFC3339)))
	}
	return w
}
