package watch

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/u7s/u7s/internal/fsutil"
)

// Drift is podsec-inotify's "has anyone changed the node's security configuration" done two
// ways: the files u7s rewrites at every start of the node (cri-o's configuration, registries
// and signature policy) are compared with what u7s would write now, byte for byte; the files
// u7s or kubeadm write once (kubelet and control-plane configuration, the node's own
// configuration, keys and kubeconfigs) are compared with a baseline recorded when u7s last
// wrote them (init, join, upgrade, certificate renewal, or by hand with --record-baseline).

// Watched is one pattern of files the baseline records. A pattern (filepath.Match) watches its
// directory too: a file that appears there later is drift.
type Watched struct {
	Pattern string
	// Content: the content is recorded, not only the mode and owner (keys and certificates are
	// renewed, their modes must not change).
	Content bool
}

// FileState is what the baseline keeps of one file.
type FileState struct {
	SHA256 string      `json:"sha256,omitempty"`
	Mode   fs.FileMode `json:"mode"`
	UID    int         `json:"uid"`
	GID    int         `json:"gid"`
}

// Baseline is the recorded state of the watched files.
type Baseline struct {
	Recorded time.Time            `json:"recorded"`
	Files    map[string]FileState `json:"files"`
}

// Snapshot reads the state of every file the patterns match now.
func Snapshot(watched []Watched) (Baseline, error) {
	b := Baseline{Recorded: time.Now().UTC(), Files: map[string]FileState{}}
	for _, w := range watched {
		matches, err := filepath.Glob(w.Pattern)
		if err != nil {
			return b, fmt.Errorf("watched pattern %s: %w", w.Pattern, err)
		}
		for _, p := range matches {
			st, err := fileState(p, w.Content)
			if errors.Is(err, os.ErrNotExist) {
				continue // gone meanwhile
			}
			if err != nil {
				return b, err
			}
			if st != nil {
				b.Files[p] = *st
			}
		}
	}
	return b, nil
}

// fileState is p's state; nil for what is not a regular file (a directory, a socket).
func fileState(p string, content bool) (*FileState, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil
	}
	st := &FileState{Mode: fi.Mode().Perm()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.UID, st.GID = int(sys.Uid), int(sys.Gid)
	}
	if content {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		st.SHA256 = hex.EncodeToString(sum[:])
	}
	return st, nil
}

// RecordBaseline writes the watched files' state now to path (0600: it lists where keys are).
func RecordBaseline(path string, watched []Watched) error {
	b, err := Snapshot(watched)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("recording the watch's baseline: %w", err)
	}
	return nil
}

// ReadBaseline reads a recorded baseline; ok is false when none was recorded.
func ReadBaseline(path string) (b Baseline, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return b, false, nil
	}
	if err != nil {
		return b, false, err
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return b, false, fmt.Errorf("%s: %w (record it again: u7s check all --record-baseline)", path, err)
	}
	return b, true, nil
}

const (
	recordFix  = "if the change was intended, record it: u7s check all --record-baseline"
	rewriteFix = "restart the node (systemctl restart u7s) to write it again, and find out who changed it"
	driftCheck = "drift"
)

// BaselineDrift compares the files the patterns match now with the baseline.
func BaselineDrift(base Baseline, watched []Watched) ([]Finding, error) {
	now, err := Snapshot(watched)
	if err != nil {
		return nil, err
	}
	var out []Finding
	for p, was := range base.Files {
		is, ok := now.Files[p]
		if !ok {
			out = append(out, Finding{ID: "drift-file-missing", Priority: Critical, Check: driftCheck, Subject: p,
				Message: fmt.Sprintf("%s was removed since %s", p, base.Recorded.Format(time.RFC3339)), Fix: recordFix})
			continue
		}
		out = append(out, compare(p, was, is, recordFix)...)
	}
	for p := range now.Files {
		if _, ok := base.Files[p]; !ok {
			out = append(out, Finding{ID: "drift-file-added", Priority: Critical, Check: driftCheck, Subject: p,
				Message: fmt.Sprintf("%s appeared since %s", p, base.Recorded.Format(time.RFC3339)), Fix: recordFix})
		}
	}
	Sort(out)
	return out, nil
}

// GeneratedDrift compares the files u7s writes at every start with what it would write now.
func GeneratedDrift(want map[string][]byte, mode fs.FileMode) ([]Finding, error) {
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var out []Finding
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			out = append(out, Finding{ID: "drift-file-missing", Priority: Critical, Check: driftCheck, Subject: p,
				Message: p + " is missing", Fix: rewriteFix})
			continue
		}
		if err != nil {
			return out, err
		}
		if !bytes.Equal(data, want[p]) {
			out = append(out, Finding{ID: "drift-file-changed", Priority: Critical, Check: driftCheck, Subject: p,
				Message: p + " differs from what u7s wrote", Fix: rewriteFix})
		}
		is, err := fileState(p, false)
		if err != nil {
			return out, err
		}
		if is != nil && is.Mode&^mode != 0 {
			out = append(out, modeFinding(p, mode, is.Mode, rewriteFix))
		}
	}
	return out, nil
}

func compare(p string, was, is FileState, fix string) []Finding {
	var out []Finding
	if was.SHA256 != "" && was.SHA256 != is.SHA256 {
		out = append(out, Finding{ID: "drift-file-changed", Priority: Critical, Check: driftCheck, Subject: p,
			Message: p + " changed since u7s wrote it", Fix: fix})
	}
	if was.Mode != is.Mode {
		out = append(out, modeFinding(p, was.Mode, is.Mode, fix))
	}
	if was.UID != is.UID || was.GID != is.GID {
		out = append(out, Finding{ID: "drift-file-owner", Priority: Critical, Check: driftCheck, Subject: p,
			Message: fmt.Sprintf("%s is owned by %d:%d, was %d:%d", p, is.UID, is.GID, was.UID, was.GID), Fix: fix})
	}
	return out
}

// modeFinding: a mode that grants more than it did is critical, one that grants less a warning
// (something may stop working, nothing is exposed).
func modeFinding(p string, was, is fs.FileMode, fix string) Finding {
	pri := Warning
	if is&^was != 0 {
		pri = Critical
	}
	return Finding{ID: "drift-file-mode", Priority: pri, Check: driftCheck, Subject: p,
		Message: fmt.Sprintf("%s has mode %04o, u7s wrote %04o", p, is, was), Fix: fix}
}
