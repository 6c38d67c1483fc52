package cli

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/host"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/nsinit"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/phases"
	"github.com/u7s/u7s/internal/status"
	"github.com/u7s/u7s/internal/supervisor"
)

func newStartCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "start",
		Short: "Start the node again (as root; after u7s stop, or after a reboot where systemd does not run it)",
		Args:  cobra.NoArgs,
	}
	bindPhases(c, phases.Start(), func(cmd *cobra.Command, _ []string) (*phases.StartData, error) {
		return phases.NewStartData(cmd.Context(), cmd.OutOrStdout())
	}, nil)
	return c
}

func newStopCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "stop",
		Short: "Stop the node (every pod with it), keeping its state for u7s start",
		Args:  cobra.NoArgs,
	}
	bindPhases(c, phases.Stop(), func(cmd *cobra.Command, _ []string) (*phases.StopData, error) {
		return phases.NewStopData(cmd.Context(), cmd.OutOrStdout())
	}, nil)
	return c
}

func newNodePrepareCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "node-prepare",
		Short:  "Before the node starts (as root; the unit's ExecStartPre): check the host's address, delegate cgroups again",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			n, err := config.Load()
			if err != nil {
				return err
			}
			return phases.Prepare(n)
		},
	}
}

func newNodeUserCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "node-user",
		Short:  "Create the system user u7s-admin with its subordinate ids if missing (the packages' install scripts)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			u, err := host.EnsurePackageUser()
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "u7s: user %s: uid %d, subordinate ids %s\n", u.Name, u.UID, u.SubUID)
			return nil
		},
	}
}

func newTokenCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "token create|list|delete [ARGS...]",
		Short:              "Manage bootstrap tokens (kubeadm token, linked); token create --print-join-command prints a u7s join command",
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
				return c.Help()
			}
			if os.Geteuid() != 0 {
				return fmt.Errorf("u7s token must run as root on a control plane (it uses %s)", paths.AdminKubeconfig)
			}
			if _, err := os.Stat(paths.AdminKubeconfig); err != nil {
				return fmt.Errorf("no %s: run u7s token on a control plane", paths.AdminKubeconfig)
			}
			full := append([]string{"token"}, args...)
			if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--kubeconfig") }) {
				full = append(full, "--kubeconfig", paths.AdminKubeconfig)
			}
			f := kubeadm.NewOutputFilter(c.OutOrStdout())
			defer f.Flush()
			return kubeadm.Run(full, os.Stdin, f, c.ErrOrStderr())
		},
	}
}

func newSuperviseCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "supervise",
		Short:  "Run the node (as u7s-admin): the namespace, cri-o, the kubelet and the port forwards",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE:   func(*cobra.Command, []string) error { return supervisor.Run() },
	}
}

func newNamespaceInitCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "namespace-init",
		Short:  "First process inside the node's namespace (started by the supervisor)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE:   func(*cobra.Command, []string) error { return nsinit.Run() },
	}
}

func newKubeadmCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "kubeadm [ARGS...]",
		Short:              "Run the linked kubeadm inside the node's namespace (init and join do this for you)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			return kubeadm.Run(args, os.Stdin, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
}

func newEnterCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "enter [-- COMMAND [ARGS...]]",
		Short: "Run a command inside the node's namespaces as the node's root (podsec's nsenter_u7s)",
		Example: `  u7s enter -- crictl --runtime-endpoint unix:///run/u7s/crio/crio.sock ps
  u7s enter -- ip addr`,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"/bin/sh"}
			}
			o, err := node.LookupOwner()
			if err != nil {
				return err
			}
			if os.Geteuid() != 0 && os.Geteuid() != o.UID {
				return fmt.Errorf("u7s enter must run as root or as %s", paths.User)
			}
			err = node.Run(o, os.Stdin, os.Stdout, os.Stderr, args...)
			if ee, ok := err.(interface{ ExitCode() int }); ok && ee.ExitCode() > 0 {
				return ExitCode(ee.ExitCode())
			}
			return err
		},
	}
}

func newStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show whether the node runs, its role, addresses and cgroup mode",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return status.Write(c.OutOrStdout(), time.Now())
		},
	}
}
