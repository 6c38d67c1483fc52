// Package release keeps the node binaries (kubelet, cri-o, pinns, runc) of the Kubernetes
// release a node runs apart from the package's: init and join copy the binaries this u7s
// carries (paths.LibexecBin) into paths.ReleasesDir/VERSION and point paths.NodeBin at it, and
// only u7s upgrade points it at another one. A newer u7s package therefore never makes a
// running node start a newer kubelet behind the admin's back (the version-skew rules say a
// kubelet must never be newer than its API server).
package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/version"
)

// Binaries are the node binaries of a release: the ones a node runs itself. The CNI plugins
// and the control plane (images) are not part of it: the plugins do not depend on the
// Kubernetes version, and kubeadm upgrades the images.
var Binaries = []string{"kubelet", "crio", "pinns", "runc"}

// Store is a releases directory and where the installed release comes from.
type Store struct {
	Dir       string // paths.ReleasesDir
	Installed string // paths.LibexecBin
	// KubeletVersion says the version of a kubelet binary ("v1.35.8"); Version by default.
	KubeletVersion func(ctx context.Context, kubelet string) (string, error)
}

// Default is the host's store.
func Default() *Store {
	return &Store{Dir: paths.ReleasesDir, Installed: paths.LibexecBin, KubeletVersion: KubeletVersion}
}

// Carried is the Kubernetes release this u7s carries: the version of its kubelet, its
// kubeadm and the control-plane images it pulls.
func Carried() string { return version.Pinned.Kubernetes }

func (s *Store) current() string { return filepath.Join(s.Dir, "current") }

// Current is the version the node runs ("" when no release was recorded: a node made before
// releases were kept, or no node).
func (s *Store) Current() (string, error) {
	t, err := os.Readlink(s.current())
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the node's release: %w", err)
	}
	return filepath.Base(t), nil
}

// Show is a release as messages name it: "none" for no release recorded.
func Show(v string) string {
	if v == "" {
		return "none"
	}
	return v
}

// Has says whether the release v is complete in the store.
func (s *Store) Has(v string) bool {
	for _, b := range Binaries {
		if fi, err := os.Stat(filepath.Join(s.Dir, v, b)); err != nil || !fi.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// Import copies the installed release into the store as version v (unless it is there),
// after checking that the installed kubelet is of version v: the package and the binary
// it carries must agree.
func (s *Store) Import(ctx context.Context, v string) error {
	if s.Has(v) {
		return nil
	}
	got, err := s.KubeletVersion(ctx, filepath.Join(s.Installed, "kubelet"))
	if err != nil {
		return err
	}
	if got != v {
		return fmt.Errorf("the kubelet in %s is %s, not %s: reinstall the u7s package (it carries Kubernetes %s)", s.Installed, got, v, Carried())
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(s.Dir, "."+v+".")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	for _, b := range Binaries {
		if err := copyFile(filepath.Join(s.Installed, b), filepath.Join(tmp, b)); err != nil {
			return fmt.Errorf("copying the node binaries of %s: %w", v, err)
		}
	}
	dst := filepath.Join(s.Dir, v)
	if err := os.RemoveAll(dst); err != nil { // an incomplete one
		return err
	}
	return os.Rename(tmp, dst)
}

// Use points the node at release v, in one rename; the node runs it from its next start.
func (s *Store) Use(v string) error {
	if !s.Has(v) {
		return fmt.Errorf("release %s is not in %s", v, s.Dir)
	}
	tmp := s.current() + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(v, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, s.current())
}

// Prune removes every release but the current one and keep (the one before an upgrade, kept
// so that its binaries are at hand).
func (s *Store) Prune(keep string) error {
	cur, err := s.Current()
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if !e.IsDir() || e.Name() == cur || e.Name() == keep || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		errs = append(errs, os.RemoveAll(filepath.Join(s.Dir, e.Name())))
	}
	return errors.Join(errs...)
}

// Check makes sure the node's release is whole before a start: the node runs the release it
// was made with (or upgraded to). One whose binaries went missing is copied again when this
// u7s carries it; else the package that carries it must be installed again.
func (s *Store) Check(ctx context.Context) error {
	cur, err := s.Current()
	if err != nil {
		return err
	}
	if cur == "" {
		return fmt.Errorf("the node has no release in %s (made by an older u7s?): run u7s reset, then u7s init or join again", s.Dir)
	}
	if s.Has(cur) {
		return nil
	}
	if cur == Carried() {
		if err := os.RemoveAll(filepath.Join(s.Dir, cur)); err != nil {
			return err
		}
		return s.Import(ctx, cur)
	}
	return fmt.Errorf("the node's release %s is incomplete in %s (it needs %s) and this u7s carries %s: install the u7s package that carries %s again, then start the node",
		cur, filepath.Join(s.Dir, cur), strings.Join(Binaries, ", "), Carried(), cur)
}

// KubeletVersion runs kubelet --version ("Kubernetes v1.35.8").
func KubeletVersion(ctx context.Context, kubelet string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kubelet, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", kubelet, err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "Kubernetes ")
	if !ok {
		return "", fmt.Errorf("%s --version printed %q, not Kubernetes vX.Y.Z", kubelet, out)
	}
	return v, nil
}

// copyFile copies an executable; written whole, then synced.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
