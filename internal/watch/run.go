package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/u7s/u7s/internal/cis"
	"github.com/u7s/u7s/internal/fsutil"
)

// State is what one run leaves to the next.
type State struct {
	Audit AuditPosition `json:"audit"`
}

// Options say where the checks look.
type Options struct {
	// ControlPlane: the node runs an API server, whose audit log is read.
	ControlPlane bool
	// CIS runs the benchmark (cis.Runner.Run on the host).
	CIS func() (*cis.Result, error)
	// AuditLog is the API server's audit log on the host.
	AuditLog string
	// CRISocket and StorageRoot are cri-o's socket and graphroot on the host.
	CRISocket, StorageRoot string
	// Generated are the files u7s writes at every start of the node, with what it would write
	// now (crio.Files), all with mode GeneratedMode.
	Generated     func() (map[string][]byte, error)
	GeneratedMode fs.FileMode
	// Baseline is where the baseline of Watched is recorded.
	Baseline string
	Watched  []Watched
	// SigningHosts and Verify: the node runs only signed images, from these registries; nil
	// Verify: it runs any image, there is no signature to check.
	SigningHosts []string
	Verify       Verifier
}

// Check is one named check of u7s check all.
type Check struct {
	Name, Doc string
	Run       func(ctx context.Context, st *State) ([]Finding, error)
}

// Checks are the checks of u7s check all, in order: the one list a reader looks at.
func Checks(o Options) []Check {
	cs := []Check{
		{"cis", "the CIS Kubernetes benchmark, as u7s check cis: each failed check is critical", func(context.Context, *State) ([]Finding, error) {
			return cisFindings(o.CIS)
		}},
	}
	if o.ControlPlane {
		cs = append(cs, Check{"audit", "the API server's audit log since the last run: refused requests, exec and attach into pods, Secrets read by people", func(_ context.Context, st *State) ([]Finding, error) {
			events, pos, err := ReadAudit(o.AuditLog, st.Audit)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", o.AuditLog, err)
			}
			st.Audit = pos
			return AuditFindings(events), nil
		}})
	}
	cs = append(cs, Check{"drift", "the node's cri-o configuration, registries and signature policy against what u7s writes; kubelet, control-plane and node configuration, static pods, keys and kubeconfigs against the baseline", func(context.Context, *State) ([]Finding, error) {
		return drift(o)
	}})
	if o.Verify != nil {
		cs = append(cs, Check{"images", "images in the node's storage that its signature policy would refuse", func(ctx context.Context, _ *State) ([]Finding, error) {
			imgs, err := StoredImages(ctx, o.CRISocket)
			if err != nil {
				return nil, err
			}
			found, _ := UnsignedImages(ctx, imgs, o.SigningHosts, o.Verify)
			return found, nil
		}})
	}
	cs = append(cs, Check{"containers", "files written into running containers' root filesystems (not volumes)", func(ctx context.Context, _ *State) ([]Finding, error) {
		cs, err := RunningContainers(ctx, o.CRISocket, o.StorageRoot)
		if err != nil {
			return nil, err
		}
		return RootfsWrites(cs)
	}})
	return cs
}

func drift(o Options) ([]Finding, error) {
	want, err := o.Generated()
	if err != nil {
		return nil, fmt.Errorf("what u7s would write: %w", err)
	}
	found, err := GeneratedDrift(want, o.GeneratedMode)
	if err != nil {
		return nil, err
	}
	base, ok, err := ReadBaseline(o.Baseline)
	if err != nil {
		return nil, err
	}
	if !ok {
		// A node made before the watch had one: what is there now becomes the baseline.
		if err := RecordBaseline(o.Baseline, o.Watched); err != nil {
			return nil, err
		}
		return append(found, Finding{ID: "drift-baseline-recorded", Priority: Info, Check: driftCheck, Subject: o.Baseline,
			Message: "no baseline of the node's files was recorded: recorded it now, later changes are drift"}), nil
	}
	more, err := BaselineDrift(base, o.Watched)
	return append(found, more...), err
}

func cisFindings(run func() (*cis.Result, error)) ([]Finding, error) {
	r, err := run()
	if err != nil {
		return nil, err
	}
	var fs []Finding
	for _, c := range r.Checks() {
		if c.Status == "FAIL" {
			fs = append(fs, Finding{ID: "cis-fail", Priority: Critical, Check: "cis", Subject: c.ID,
				Message: fmt.Sprintf("CIS %s failed: %s", c.ID, c.Text), Fix: c.Remediation})
		}
	}
	return fs, nil
}

// Run runs checks with the state of the last run (statePath), saves the new state and returns
// the findings, sorted, and the checks that could not run. A check that cannot run is itself a
// critical finding: the watch cannot vouch for what it did not see.
func Run(ctx context.Context, checks []Check, statePath string) ([]Finding, map[string]error, error) {
	st := State{}
	if b, err := os.ReadFile(statePath); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, nil, fmt.Errorf("%s: %w (remove it and run again: the audit log is then read from its start)", statePath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	var all []Finding
	failed := map[string]error{}
	for _, c := range checks {
		fs, err := c.Run(ctx, &st)
		if err != nil {
			failed[c.Name] = err
			all = append(all, Finding{ID: "watch-check-failed", Priority: Critical, Check: c.Name, Subject: c.Name,
				Message: fmt.Sprintf("check %s could not run: %v", c.Name, err)})
			continue
		}
		all = append(all, fs...)
	}
	Sort(all)
	b, err := json.Marshal(st)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(filepath.Dir(statePath), 0o700); err != nil {
		return nil, nil, err
	}
	if err := fsutil.WriteFileAtomic(statePath, b, 0o600); err != nil {
		return nil, nil, fmt.Errorf("saving the watch's state: %w", err)
	}
	return all, failed, nil
}
