package phases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

	"github.com/u7s/u7s/internal/etcdbackup"
)

// SnapshotSave saves a snapshot of a control plane's etcd (u7s etcd snapshot save); the
// scheduled one (the timer's) then prunes the old ones.
func SnapshotSave() []workflow.Phase {
	return []workflow.Phase{snapshotSavePhase(), snapshotPrunePhase()}
}

// SnapshotOptions are the arguments and flags of u7s etcd snapshot save.
type SnapshotOptions struct {
	File      string // where to save; empty with Scheduled
	Scheduled bool   // the timer's run: a file named by the time in etcdbackup.Dir, then pruned
	Keep      int    // with Scheduled: how many scheduled snapshots stay
}

// SnapshotSaveData is the run of u7s etcd snapshot save: the flow SnapshotSave's phases share.
type SnapshotSaveData struct {
	Ctx context.Context
	O   SnapshotOptions
	printer

	endpoint etcdbackup.Endpoint
	now      time.Time
}

// NewSnapshotSaveData checks the options and finds this control plane's etcd member; it changes
// nothing.
func NewSnapshotSaveData(ctx context.Context, o SnapshotOptions, out io.Writer) (*SnapshotSaveData, error) {
	switch {
	case o.Scheduled && o.File != "":
		return nil, errors.New("give FILE or --scheduled, not both")
	case !o.Scheduled && o.File == "":
		return nil, errors.New("give the snapshot's FILE, or --scheduled")
	case o.Scheduled && o.Keep < 1:
		return nil, fmt.Errorf("--keep %d: keep at least 1 scheduled snapshot", o.Keep)
	}
	n, err := ControlPlane("u7s etcd snapshot save")
	if err != nil {
		return nil, err
	}
	d := &SnapshotSaveData{Ctx: ctx, O: o, printer: printer{out}, endpoint: etcdbackup.MemberAt(n.AdvertiseAddress), now: time.Now()}
	if o.Scheduled {
		d.O.File = filepath.Join(etcdbackup.Dir, etcdbackup.ScheduledName(d.now))
	}
	return d, nil
}

func snapshotSavePhase() workflow.Phase {
	return typedPhase("save", "Save the snapshot (0600), checked before it takes its name", func(d *SnapshotSaveData) error {
		start := time.Now()
		info, err := etcdbackup.Save(d.Ctx, d.endpoint, d.O.File)
		if err != nil {
			return err
		}
		d.step("saved %s: revision %d, %d keys, %d bytes, %.1fs", info.Path, info.Revision, info.Keys, info.Size, time.Since(start).Seconds())
		return nil
	})
}

// snapshotPrunePhase keeps the newest scheduled snapshots; a snapshot saved to a named file is
// the admin's to keep.
func snapshotPrunePhase() workflow.Phase {
	return typedPhase("prune", "With --scheduled: remove all but the newest --keep scheduled snapshots", func(d *SnapshotSaveData) error {
		if !d.O.Scheduled {
			return nil
		}
		removed, err := etcdbackup.Prune(etcdbackup.Dir, d.O.Keep)
		for _, r := range removed {
			d.detail("removed %s (keeping the newest %d)", r, d.O.Keep)
		}
		return err
	})
}
