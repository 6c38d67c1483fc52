// Package cli is the u7s command tree: flags, and calls into the packages that do the work.
// root.go lists every command; each lives in the file named after it.
package cli

import (
	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/version"
)

// NewRootCommand returns the u7s command tree.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "u7s",
		Short:         "Rootless Kubernetes nodes: every component inside the user namespace of " + "u7s-admin",
		Version:       version.U7s + " (Kubernetes " + version.Pinned.Kubernetes + ", cri-o " + version.Pinned.CRIO + ")",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		// Making, running and removing a node (init.go, node.go).
		newInitCommand(), newJoinCommand(), newResetCommand(),
		newStartCommand(), newStopCommand(), newStatusCommand(), newEnterCommand(), newTokenCommand(),
		// Day 2 (upgrade.go, etcd.go, certs.go, check.go, ports.go).
		newUpgradeCommand(), newEtcdCommand(), newCertsCommand(), newCheckCommand(), newPortsCommand(),
		// People's access (user.go); the balancers in front of the cluster (balancer.go).
		newUserCommand(), newBalancerCommand(),
		// Images and their registry (images*.go, registry.go).
		newImagesCommand(), newRegistryCommand(),
		newVersionCommand(), newGenerateCommand(),
		// Hidden: what the units, the packages and the supervisor run (node.go, maintenance.go).
		newSuperviseCommand(), newNamespaceInitCommand(), newKubeadmCommand(), newNodePrepareCommand(),
		newNodeUserCommand(), newNodeMaintenanceCommand(),
	)
	return root
}
