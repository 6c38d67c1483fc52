package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/users"
)

const revocationNote = "A client certificate cannot be revoked: it is valid until it expires. Take access away with\n" +
	"u7s user unbind or u7s user remove (its bindings go); renew with u7s user add again."

// newUserCommand is `u7s user`: people's own access to the cluster (podsec-k8s-rbac's).
func newUserCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "user",
		Short: "Cluster users: a client certificate and kubeconfig each, and their role bindings (on a control plane, as root)",
		Long: "Gives people their own access instead of the admin's admin.conf: each request they make is theirs\n" +
			"in the audit log, and they get only the roles bound to them.\n\n" + revocationNote,
	}
	c.AddCommand(newUserAddCommand(), newUserBindCommand(false), newUserBindCommand(true), newUserListCommand(), newUserRemoveCommand())
	return c
}

func newUserAddCommand() *cobra.Command {
	var groups []string
	var validFor time.Duration
	var out string
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Issue NAME a client certificate (the cluster's CSR API) and write a kubeconfig with it (0600)",
		Long: "Makes a key on this host, asks the cluster's kube-apiserver-client signer for a certificate of\n" +
			"CN=NAME (O=each --group), approves it and writes a kubeconfig at the control-plane endpoint.\n" +
			"It grants nothing until a role is bound: u7s user bind NAME ROLE.\n" +
			"Run again to renew (a new key and certificate; the old one stays valid until it expires).\n\n" + revocationNote,
		Example: "  u7s user add alice --kubeconfig alice.conf\n" +
			"  u7s user add bob --group developers --valid-for 168h --kubeconfig /root/bob.conf",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			name := args[0]
			// Checked before anything is asked of the cluster.
			if err := users.ValidateName(name); err != nil {
				return err
			}
			if err := users.ValidateGroups(groups); err != nil {
				return err
			}
			if out == "" {
				out = name + ".conf"
			}
			if fi, err := os.Stat(filepath.Dir(out)); err != nil || !fi.IsDir() {
				return fmt.Errorf("--kubeconfig %s: its directory does not exist", out)
			}
			admin, err := clientcmd.LoadFromFile(paths.AdminKubeconfig)
			if err != nil {
				return fmt.Errorf("reading %s (u7s user runs as root on a control plane): %w", paths.AdminKubeconfig, err)
			}
			cs, err := kube.Admin()
			if err != nil {
				return err
			}
			host, _ := os.Hostname()
			fmt.Fprintf(c.ErrOrStderr(), "asking the cluster to sign a certificate for %s (valid for %s at most)\n", name, validFor)
			u, err := users.Issue(c.Context(), cs, name, groups, validFor, host)
			if err != nil {
				return err
			}
			data, err := users.Kubeconfig(admin, u)
			if err != nil {
				return err
			}
			if err := fsutil.WriteFileAtomic(out, data, 0o600); err != nil {
				return fmt.Errorf("writing %s: %w", out, err)
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "user %s: certificate %s valid until %s, kubeconfig %s (0600)\n", name, u.Serial, u.NotAfter.Format(time.RFC3339), out)
			if len(groups) > 0 {
				fmt.Fprintf(w, "groups: %s\n", strings.Join(groups, ", "))
			}
			fmt.Fprintf(w, "It grants nothing yet: u7s user bind %s ROLE [--namespace NS] (view, edit, admin, ...)\n", name)
			fmt.Fprintln(w, revocationNote)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&groups, "group", nil, "a group of the user (the certificate's O; repeatable); system: groups are refused")
	cmd.Flags().DurationVar(&validFor, "valid-for", users.DefaultValidFor, "the certificate's lifetime asked (the cluster caps it, kube-controller-manager's --cluster-signing-duration)")
	cmd.Flags().StringVar(&out, "kubeconfig", "", "where to write the user's kubeconfig (default NAME.conf here)")
	return cmd
}

func newUserBindCommand(unbind bool) *cobra.Command {
	var namespace string
	use, short := "bind NAME ROLE", "Bind NAME to ROLE (a ClusterRole, or Role/NAME of the namespace) in --namespace, or cluster-wide"
	if unbind {
		use, short = "unbind NAME ROLE", "Remove NAME's binding to ROLE in --namespace, or the cluster-wide one"
	}
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: "  u7s user bind alice view --namespace shop\n  u7s user bind bob edit\n  u7s user unbind alice view --namespace shop",
		Args:    cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			cs, err := kube.Admin()
			if err != nil {
				return err
			}
			if unbind {
				if err := users.Unbind(c.Context(), cs, args[0], args[1], namespace); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "user %s: %s unbound\n", args[0], users.Binding{Role: args[1], Namespace: namespace})
				return nil
			}
			b, err := users.Bind(c.Context(), cs, args[0], args[1], namespace)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "user %s: %s\n", args[0], b)
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "the namespace of the binding (none: cluster-wide)")
	return cmd
}

func newUserListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "The users: groups, certificate expiry and bindings",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cs, err := kube.Admin()
			if err != nil {
				return err
			}
			all, err := users.List(c.Context(), cs)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "USER\tGROUPS\tCERTIFICATE EXPIRES\tBINDINGS\tUNBIND WITH")
			for _, u := range all {
				exp := "-"
				if !u.NotAfter.IsZero() {
					exp = u.NotAfter.Format(time.RFC3339)
					if time.Now().After(u.NotAfter) {
						exp += " (expired)"
					}
				}
				groups := strings.Join(u.Groups, ",")
				if groups == "" {
					groups = "-"
				}
				if len(u.Bindings) == 0 {
					fmt.Fprintf(w, "%s\t%s\t%s\t-\t-\n", u.Name, groups, exp)
				}
				for _, b := range u.Bindings {
					unbind := "u7s user unbind " + u.Name + " " + b.Role
					if b.Namespace != "" {
						unbind += " --namespace " + b.Namespace
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", u.Name, groups, exp, b, unbind)
				}
			}
			return w.Flush()
		},
	}
}

func newUserRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove every binding of NAME and its record (its certificate stays valid until it expires, granting nothing)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cs, err := kube.Admin()
			if err != nil {
				return err
			}
			removed, notAfter, err := users.Remove(c.Context(), cs, args[0])
			for _, b := range removed {
				fmt.Fprintf(c.OutOrStdout(), "user %s: %s unbound\n", args[0], b)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "user %s removed. Its certificate is valid until %s but has no bindings of its own;\n"+
				"bindings of its groups, if any, still apply to it.\n", args[0], notAfter.Format(time.RFC3339))
			return nil
		},
	}
}
