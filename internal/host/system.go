// Package host prepares and checks the host for a rootless node: preflight checks, the
// system user and its subordinate ids, sysctls, and the record of what was changed so that
// u7s reset undoes exactly that. Everything is checked before anything changes.
package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// system is the host as the checks and changes see it; tests replace its parts.
type system struct {
	// root prefixes every absolute path; "" on a real host.
	root        string
	euid        func() int
	lookPath    func(file string) (string, error)
	run         func(name string, args ...string) ([]byte, error)
	bind        func(network string, port int) error
	hostNets    func() ([]hostNet, error)
	tryUserns   func() error
	lookupUser  func(name string) (*user.User, error)
	lookupGroup func(name string) (*user.Group, error)
	// ipset asks the kernel's ip_set for its protocol version; nil skips the check.
	ipset func() error
}

func (s *system) path(p string) string { return filepath.Join(s.root, p) }

// sbinDirs are searched after PATH: sudo and service managers often leave out sbin.
var sbinDirs = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

func lookPath(file string) (string, error) {
	if p, err := exec.LookPath(file); err == nil {
		return p, nil
	}
	for _, d := range sbinDirs {
		p := filepath.Join(d, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", file, exec.ErrNotFound)
}

func runCommand(name string, args ...string) ([]byte, error) {
	path, err := lookPath(name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return out, nil
}

// bindPort binds the port on all IPv4 addresses and lets it go again.
func bindPort(network string, port int) error {
	addr := net.JoinHostPort("0.0.0.0", strconv.Itoa(port))
	switch network {
	case "tcp":
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			return err
		}
		return l.Close()
	case "udp":
		c, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	return fmt.Errorf("unknown network %q", network)
}

// nobody is the uid/gid the user-namespace probe runs as when we are root.
const nobody = 65534

// tryUserns creates a user namespace as an unprivileged user and maps root in it, the
// way rootlesskit will; sysctls alone miss LSM policies (AppArmor's userns restriction).
func tryUserns() error {
	unshare, err := lookPath("unshare")
	if err != nil {
		return fmt.Errorf("unshare (util-linux) not found, cannot probe: %w", err)
	}
	truePath, err := lookPath("true")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "--user", "--map-root-user", "--", truePath)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func defaultSystem() *system {
	return &system{
		euid:        os.Geteuid,
		lookPath:    lookPath,
		run:         runCommand,
		bind:        bindPort,
		hostNets:    listHostNets,
		tryUserns:   tryUserns,
		lookupUser:  user.Lookup,
		lookupGroup: user.LookupGroup,
		ipset:       func() error { _, _, err := netlink.IpsetProtocol(); return err },
	}
}

// isNotExist is errors.Is(err, fs.ErrNotExist) that also treats ENOTDIR as absence.
func isNotExist(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
