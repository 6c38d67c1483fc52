package host

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

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
}

func (st State) empty() bool {
	return !st.CreatedUser && len(st.AddedSubUIDs) == 0 && len(st.AddedSubGIDs) == 0 && len(st.Sysctls) == 0 && st.TunMode == 0 && !st.CreatedModulesDir
}

// LoadState reads paths.HostStateFile; a missing file is an empty State.
func LoadState() (State, error) { return defaultSystem().loadState() }

// SaveState writes paths.HostStateFile atomically; an empty State removes the file.
func SaveState(st State) error { return defaultSystem().saveState(st) }

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
