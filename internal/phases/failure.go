package phases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/u7s/u7s/internal/paths"
)

// Failed is the failure policy of init and join: a run that failed after it changed the host is
// undone (reset's cleanup of what it recorded) unless keep (--keep-on-failure), and its logs are
// kept first, in a directory of their own that the undo does not remove; the error then names
// that directory wherever it named the logs. err is the run's error; Failed returns the one to
// report.
func Failed(ctx context.Context, flow string, d *Data, keep bool, out io.Writer, err error) error {
	if err == nil || d == nil || !d.Changed {
		return err
	}
	if keep {
		fmt.Fprintf(out, "%s failed; the node is left as it is (--keep-on-failure): inspect %s, then run u7s reset\n", flow, paths.LogDir)
		return err
	}
	kept, kerr := keepLogs(paths.LogDir, paths.OnHost(paths.PodLogDir), paths.FailedLogDir, flow, time.Now())
	switch {
	case kerr != nil:
		fmt.Fprintf(out, "warning: keeping the logs of the failed %s: %v\n", flow, kerr)
	case kept != "":
		fmt.Fprintf(out, "%s failed; its logs are kept in %s\n", flow, kept)
		err = &logsMoved{err: err, from: paths.LogDir, to: kept}
	}
	fmt.Fprintf(out, "%s failed; undoing what it did...\n", flow)
	if rerr := Undo(ctx, flow); rerr != nil {
		fmt.Fprintf(out, "warning: undoing: %v\n", rerr)
	}
	return err
}

// logsMoved is a run's error whose logs were moved: its text names where they are now.
type logsMoved struct {
	err      error
	from, to string
}

func (e *logsMoved) Error() string {
	msg := e.err.Error()
	if strings.Contains(msg, e.from) {
		return strings.ReplaceAll(msg, e.from, e.to)
	}
	return msg + " (logs: " + e.to + ")"
}

func (e *logsMoved) Unwrap() error { return e.err }

// keepLogs moves every file of logDir (a failed run's logs, the API server's audit log
// included) into a new directory under failedDir named after the flow and the time, and returns
// it; "" when there was nothing to keep. A log a process still writes goes on growing there.
// The kube-system pods' logs of podDir (the control plane's own: why an API server or etcd did
// not come up) are copied into pods/.
func keepLogs(logDir, podDir, failedDir, flow string, now time.Time) (string, error) {
	ents, err := os.ReadDir(logDir)
	if errors.Is(err, os.ErrNotExist) || err == nil && len(ents) == 0 {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	dst := filepath.Join(failedDir, flow+"-"+now.UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(dst, 0o750); err != nil {
		return "", err
	}
	var errs []error
	for _, e := range ents {
		if err := os.Rename(filepath.Join(logDir, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	pods, err := os.ReadDir(podDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range pods {
		if !strings.HasPrefix(e.Name(), "kube-system_") {
			continue
		}
		// Copied, not moved: /var/log may be another file system than the node's state.
		if err := copyTree(filepath.Join(podDir, e.Name()), filepath.Join(dst, "pods", e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return dst, errors.Join(errs...)
}

// copyTree copies the directories and regular files under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(to, 0o750)
		case !e.Type().IsRegular():
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o640)
	})
}
