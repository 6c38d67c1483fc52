package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/version"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of u7s and of the stack it runs",
		Args:  cobra.NoArgs,
		Run:   func(c *cobra.Command, _ []string) { fmt.Fprint(c.OutOrStdout(), version.Report()) },
	}
}

// newGenerateCommand writes what the packages ship, from the command tree and the host
// package's lists, so that nothing is kept twice.
func newGenerateCommand() *cobra.Command {
	c := &cobra.Command{Use: "generate", Short: "Write the files the packages ship (build time)", Hidden: true}
	c.AddCommand(&cobra.Command{
		Use: "man DIR", Short: "man pages: u7s(1) and one per command", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := c.Root()
			root.DisableAutoGenTag = true
			return doc.GenManTree(root, &doc.GenManHeader{
				Title: "U7S", Section: "1", Source: "u7s " + version.U7s, Manual: "u7s manual",
			}, args[0])
		},
	})
	c.AddCommand(&cobra.Command{
		Use: "completion DIR", Short: "bash, zsh and fish completion: DIR/u7s.bash, DIR/_u7s, DIR/u7s.fish", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			root := c.Root()
			var b, z, f bytes.Buffer
			if err := root.GenBashCompletionV2(&b, true); err != nil {
				return err
			}
			if err := root.GenZshCompletion(&z); err != nil {
				return err
			}
			if err := root.GenFishCompletion(&f, true); err != nil {
				return err
			}
			for name, data := range map[string][]byte{"u7s.bash": b.Bytes(), "_u7s": z.Bytes(), "u7s.fish": f.Bytes()} {
				if err := fsutil.WriteFileAtomic(filepath.Join(args[0], name), data, 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	})
	c.AddCommand(&cobra.Command{
		Use: "sysctl FILE", Short: "the sysctl.d file of the node's kernel settings", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return fsutil.WriteFileAtomic(args[0], []byte(host.SysctlConf()), 0o644)
		},
	})
	c.AddCommand(&cobra.Command{
		Use: "modules FILE", Short: "the modules-load.d file of the kernel modules the node needs", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return fsutil.WriteFileAtomic(args[0], []byte("# Kernel modules a u7s node needs (written by u7s generate modules).\n"+
				strings.Join(host.KernelModules, "\n")+"\n"), 0o644)
		},
	})
	return c
}
