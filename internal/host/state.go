package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/paths"
)

// State records what u7s init changed on the host, so that u7s reset undoes that and
// nothing else. EnsureUser and ApplySysctls update it themselves as they change things.
type State struct {
	// CreatedUser is true when EnsureUser created paths.User (not when it found it).
	CreatedUser bool `json:"createdUser,omitempty"`
	// AddedSubUIDs and AddedSubGIDs are the ranges EnsureUser added for paths.User.
	AddedSubUIDs []IDRange `json:"addedSubUIDs,omitempty"`
	AddedSubGIDs []IDRange `json:"addedSubGIDs,omitempty"`
	// Sysctls are the values ApplySysctls changed, with what they were before.
	Sysctls []SysctlChange `json:"sysctls,omitempty"`
	// TunMode is /dev/net/tun's mode before EnsureTun opened it to every user (0: untouched).
	TunMode os.FileMode `json:"tunMode,omitempty"`
	// CreatedModulesDir is true when EnsureModulesDir created /lib/modules.
	CreatedModulesDir bool `json:"createdModulesDir,omitempty"`
	// Created are files and directories u7s made (a directory with all in it); reset
	// removes them, deepest first.
	Created []string `json:"created,omitempty"`
	// Kept are, for a directory that existed before init or join and that kubeadm writes
	// into (/etc/kubernetes), the entries it had then: reset removes every other entry.
	Kept map[string][]string `json:"kept,omitempty"`
}

func (st State) empty() bool {
	return !st.CreatedUser && len(st.AddedSubUIDs) == 0 && len(st.AddedSubGIDs) == 0 && len(st.Sysctls) == 0 &&
		st.TunMode == 0 && !st.CreatedModulesDir && len(st.Created) == 0 && len(st.Kept) == 0
}

// MakeDir creates dir (mode, owner) unless it exists, and records it as made by u7s. A dir
// that existed is only recorded with its entries (Kept), so that reset removes only what
// was added to it.
func MakeDir(dir string, mode os.FileMode, uid, gid int) error {
	return defaultSystem().makeDir(dir, mode, uid, gid)
}

func (s *system) makeDir(dir string, mode os.FileMode, uid, gid int) error {
	p := s.path(dir)
	if fi, err := os.Stat(p); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s exists and is not a directory: move it away", dir)
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if err := s.updateState(func(st *State) {
			if _, ok := st.Kept[dir]; !ok && !slices.Contains(st.Created, dir) {
				if st.Kept == nil {
					st.Kept = map[string][]string{}
				}
				st.Kept[dir] = names
			}
		}); err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	}
	if err := s.updateState(func(st *State) { st.Created = appendNew(st.Created, dir) }); err != nil {
		return err
	}
	if err := fsutil.MkdirOwned(p, mode, uid, gid); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return nil
}

// RecordCreated notes files u7s is about to write (recorded first, so that a crash in
// between leaves nothing unrecorded), unless they exist already: what existed stays.
func RecordCreated(files ...string) error {
	s := defaultSystem()
	return s.updateState(func(st *State) {
		for _, f := range files {
			if _, err := os.Lstat(s.path(f)); err == nil && !slices.Contains(st.Created, f) {
				continue
			}
			st.Created = appendNew(st.Created, f)
		}
	})
}

func appendNew(list []string, v string) []string {
	if slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}

// RemoveRecorded removes what MakeDir and RecordCreated recorded: made paths whole, and in
// kept directories every entry that was not there before. A made directory that holds one of
// keep (host paths: volumes that outlive the node) loses everything but the way to it. Safe
// to repeat.
func RemoveRecorded(keep ...string) error { return defaultSystem().removeRecorded(keep) }

func (s *system) removeRecorded(keep []string) error {
	st, err := s.loadState()
	if err != nil {
		return err
	}
	var errs []error
	for dir, names := range st.Kept {
		ents, err := os.ReadDir(s.path(dir))
		if err != nil && !isNotExist(err) {
			errs = append(errs, err)
		}
		for _, e := range ents {
			if !slices.Contains(names, e.Name()) {
				if err := os.RemoveAll(filepath.Join(s.path(dir), e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	// Deepest first, so that a recorded file inside a recorded directory goes before it.
	created := slices.Clone(st.Created)
	slices.SortFunc(created, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, p := range created {
		if err := s.removeAllBut(p, keep); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.updateState(func(st *State) { st.Created, st.Kept = nil, nil })
}

// removeAllBut removes p (a host path) and everything in it except the paths of keep below it
// and the directories on the way to them.
func (s *system) removeAllBut(p string, keep []string) error {
	var inside []string
	for _, k := range keep {
		if k == p {
			return nil
		}
		if strings.HasPrefix(k, strings.TrimSuffix(p, "/")+"/") {
			inside = append(inside, k)
		}
	}
	if len(inside) == 0 {
		return os.RemoveAll(s.path(p))
	}
	ents, err := os.ReadDir(s.path(p))
	if err != nil {
		if isNotExist(err) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range ents {
		if err := s.removeAllBut(filepath.Join(p, e.Name()), inside); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *system) loadState() (State, error) {
	var st State
	p := s.path(paths.HostStateFile)
	data, err := os.ReadFile(p)
	if isNotExist(err) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read host state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("parse host state %s: %w (remove it only if you know what u7s init changed)", p, err)
	}
	return st, nil
}

func (s *system) saveState(st State) error {
	p := s.path(paths.HostStateFile)
	if st.empty() {
		if err := os.Remove(p); err != nil && !isNotExist(err) {
			return fmt.Errorf("remove host state: %w", err)
		}
		return nil
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("save host state: %w", err)
	}
	return fsutil.WriteFileAtomic(p, append(data, '\n'), 0o644)
}

// updateState loads the state, lets f change it and saves it.
func (s *system) updateState(f func(*State)) error {
	st, err := s.loadState()
	if err != nil {
		return err
	}
	f(&st)
	return s.saveState(st)
}
