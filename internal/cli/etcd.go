package cli

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/etcdbackup"
	"github.com/u7s/u7s/internal/kubeadm"
	"github.com/u7s/u7s/internal/phases"
)

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
	c.AddCommand(newEtcdSnapshotCommand())
	return c
}

func newEtcdSnapshotCommand() *cobra.Command {
	c := &cobra.Command{Use: "snapshot", Short: "Save, list and restore snapshots of this control plane's etcd (as root)"}
	var so phases.SnapshotOptions
	save := &cobra.Command{
		Use:   "save FILE | --scheduled",
		Short: "Save a snapshot (0600, checked); --scheduled: into " + etcdbackup.Dir + ", keeping the newest --keep",
		Args:  cobra.MaximumNArgs(1),
	}
	save.Flags().BoolVar(&so.Scheduled, "scheduled", false, "what the timer runs: a snapshot named by the time in "+etcdbackup.Dir)
	save.Flags().IntVar(&so.Keep, "keep", 7, "with --scheduled: how many scheduled snapshots to keep")
	bindPhases(save, phases.SnapshotSave(), func(cmd *cobra.Command, args []string) (*phases.SnapshotSaveData, error) {
		if len(args) > 0 {
			so.File = args[0]
		}
		return phases.NewSnapshotSaveData(cmd.Context(), so, cmd.OutOrStdout())
	}, nil)
	list := &cobra.Command{
		Use:   "list [DIR]",
		Short: "The snapshots in DIR (default " + etcdbackup.Dir + "), newest first, each checked",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if os.Geteuid() != 0 {
				return errors.New("u7s etcd snapshot list must run as root")
			}
			dir := etcdbackup.Dir
			if len(args) == 1 {
				dir = args[0]
			}
			infos, bad, err := etcdbackup.List(dir)
			if err != nil {
				return err
			}
			for _, i := range infos {
				fmt.Fprintf(c.OutOrStdout(), "%s\t%s\trevision %d\t%d keys\t%d bytes\n", i.Path, i.Time.UTC().Format(time.RFC3339), i.Revision, i.Keys, i.Size)
			}
			for _, e := range bad {
				fmt.Fprintf(c.ErrOrStderr(), "u7s: warning: %v\n", e)
			}
			return nil
		},
	}
	var ro phases.RestoreOptions
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Stop the node and put etcd back to the snapshot, as a new cluster of this member alone",
		Long: `Checks FILE first (a corrupt or foreign file changes nothing), asks unless --yes, stops the
node, restores into a new data directory with a new cluster identity (etcd's own restore,
the revision bumped so that every watcher relists), keeps the old directory beside it and
starts the node. Other control planes then run u7s reset and u7s join --control-plane.`,
		Args: cobra.ExactArgs(1),
	}
	restore.Flags().BoolVar(&ro.Yes, "yes", false, "do not ask")
	bindPhases(restore, phases.Restore(), func(cmd *cobra.Command, args []string) (*phases.RestoreData, error) {
		if len(args) > 0 {
			ro.File = args[0]
		}
		if ro.File == "" {
			return nil, errors.New("give the snapshot FILE")
		}
		return phases.NewRestoreData(cmd.Context(), ro, cmd.InOrStdin(), cmd.OutOrStdout())
	}, nil)
	c.AddCommand(save, list, restore)
	return c
}
