// Package cli wires the u7s commands. Each command lives in its own file and registers
// itself with register, so that cmd/u7s stays thin and commands stay independent.
package cli

import (
	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/version"
)

var commands []func() *cobra.Command

func init() { register(newCheckCommand) }

// register adds a top-level command; called from init() of each command's file.
func register(f func() *cobra.Command) { commands = append(commands, f) }

// NewRootCommand returns the u7s command tree.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "u7s",
		Short:         "Rootless Kubernetes nodes: every component inside the user namespace of " + "u7s-admin",
		Version:       version.U7s + " (Kubernetes " + version.Pinned.Kubernetes + ", cri-o " + version.Pinned.CRIO + ")",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, f := range commands {
		root.AddCommand(f())
	}
	return root
}

var imagesSubcommands []func() *cobra.Command

// registerImagesSubcommand adds a subcommand under `u7s images` from another file.
func registerImagesSubcommand(f func() *cobra.Command) {
	imagesSubcommands = append(imagesSubcommands, f)
}
