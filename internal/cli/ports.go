package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/ports"
)

func newPortsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "ports",
		Short: "Forward ports from the host into the node's namespace (like rootlessctl); NodePorts are forwarded automatically",
	}
	c.AddCommand(&cobra.Command{
		Use:   "add SPEC...",
		Short: "Forward host ports: [parentIP:]parentPort:[childIP:]childPort/proto",
		Example: `  u7s ports add 0.0.0.0:8080:80/tcp
  u7s ports add [::]:5353:53/udp`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			specs := make([]port.Spec, 0, len(args))
			for _, a := range args { // check every spec before adding any
				sp, err := ports.ParseSpec(a)
				if err != nil {
					return err
				}
				specs = append(specs, sp)
			}
			m, err := ports.Manager()
			if err != nil {
				return err
			}
			for _, sp := range specs {
				st, err := ports.Add(c.Context(), m, sp)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "%d\t%s\n", st.ID, ports.Format(st.Spec))
			}
			return nil
		},
	})
	var output string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the forwards (control-plane, NodePort and manual ones)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			m, err := ports.Manager()
			if err != nil {
				return err
			}
			sts, err := m.ListPorts(c.Context())
			if err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(sts)
			case "", "table":
				w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tSPEC")
				for _, st := range sts {
					fmt.Fprintf(w, "%d\t%s\n", st.ID, ports.Format(st.Spec))
				}
				return w.Flush()
			default:
				return fmt.Errorf("-o %q: want table or json", output)
			}
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	c.AddCommand(list)
	c.AddCommand(&cobra.Command{
		Use:   "remove ID|SPEC...",
		Short: "Remove forwards by ID (see list) or by spec",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			m, err := ports.Manager()
			if err != nil {
				return err
			}
			var errs []error
			for _, a := range args {
				st, err := ports.Remove(c.Context(), m, a)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(c.OutOrStdout(), "removed %d\t%s\n", st.ID, ports.Format(st.Spec))
			}
			return errors.Join(errs...)
		},
	})
	return c
}
