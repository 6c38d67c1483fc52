// Package namespace makes and enters the node's rootless namespaces: rootlesskit v3, linked as
// a library, with slirp4netns networking and the builtin port driver, as podsec-k8s and
// usernetes run it (--net=slirp4netns --mtu=65520 --disable-host-loopback --port-driver=builtin
// --copy-up=/etc,/run,/var/lib,/opt --pidns --cgroupns --ipcns --utsns).
package namespace

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rootless-containers/rootlesskit/v3/pkg/child"
	"github.com/rootless-containers/rootlesskit/v3/pkg/copyup/tmpfssymlink"
	"github.com/rootless-containers/rootlesskit/v3/pkg/network/slirp4netns"
	"github.com/rootless-containers/rootlesskit/v3/pkg/parent"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin"
)

// Environment keys of the parent-child protocol. The child is a re-exec of the same binary
// with the same arguments; the pipe key tells it apart.
const (
	pipeFDEnvKey              = "_U7S_ROOTLESSKIT_PIPEFD"
	childUseActivationEnvKey  = "_U7S_ROOTLESSKIT_ACTIVATION_CHILD"
	runActivationHelperEnvKey = "_U7S_ROOTLESSKIT_ACTIVATION_HELPER"
	stateDirEnvKey            = "ROOTLESSKIT_STATE_DIR"
	parentEUIDEnvKey          = "ROOTLESSKIT_PARENT_EUID"
	parentEGIDEnvKey          = "ROOTLESSKIT_PARENT_EGID"
	targetEnvKey              = "_U7S_NAMESPACE_TARGET"
	evacuateEnvKey            = "_U7S_NAMESPACE_EVACUATE_CGROUP2"
)

// CopyUpDirs become writable tmpfs copies inside the namespace, so that the node's root can
// write what it needs there without touching the host's files.
var CopyUpDirs = []string{"/etc", "/run", "/var/lib", "/opt"}

// Config describes the namespace.
type Config struct {
	StateDir  string      // rootlesskit's state directory (child_pid, api.sock); created if missing
	MTU       int         // of the tap device; 65520 is slirp4netns's fastest
	CIDR      string      // slirp4netns's network, e.g. 10.0.2.0/24 (empty: its default)
	Publish   []port.Spec // forwarded from the host as soon as the namespace is up
	TargetCmd []string    // runs inside as the namespace's root
	// EvacuateCgroup2 moves the processes of a delegated cgroup v2 into a child group, so
	// that the namespace's root cgroup can enable controllers for its children.
	EvacuateCgroup2 string
	Slirp4netns     string // binary; looked up on PATH if empty
	Log             io.Writer
}

// IsChild reports whether this process is the rootlesskit child re-exec.
func IsChild() bool { return os.Getenv(pipeFDEnvKey) != "" }

// RunParent creates the namespaces and blocks until the child exits.
func RunParent(c Config) error {
	if len(c.TargetCmd) == 0 {
		return errors.New("namespace: no target command")
	}
	if c.Log == nil {
		c.Log = os.Stderr
	}
	bin := c.Slirp4netns
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("slirp4netns"); err != nil {
			return fmt.Errorf("slirp4netns not found: install the slirp4netns package: %w", err)
		}
	}
	if err := parent.InitStateDir(c.StateDir); err != nil {
		return fmt.Errorf("preparing rootlesskit state dir %s: %w", c.StateDir, err)
	}
	var ipnet *net.IPNet
	if c.CIDR != "" {
		_, n, err := net.ParseCIDR(c.CIDR)
		if err != nil {
			return fmt.Errorf("namespace CIDR %q: %w", c.CIDR, err)
		}
		ipnet = n
	}
	feats, err := slirp4netns.DetectFeatures(bin)
	if err != nil {
		return fmt.Errorf("probing %s: %w", bin, err)
	}
	netDriver, err := slirp4netns.NewParentDriver(c.Log, bin, c.MTU, ipnet, "tap0", true,
		filepath.Join(c.StateDir, "slirp4netns.sock"),
		feats.SupportsEnableSandbox, feats.SupportsEnableSeccomp && feats.KernelSupportsEnableSeccomp, false)
	if err != nil {
		return fmt.Errorf("slirp4netns driver: %w", err)
	}
	// Source IP transparency keeps the TCP client's address visible to pods.
	portDriver, err := builtin.NewParentDriver(c.Log, c.StateDir, true)
	if err != nil {
		return fmt.Errorf("builtin port driver: %w", err)
	}
	// The child learns its target from the environment: it re-execs with our own argv.
	target, err := json.Marshal(c.TargetCmd)
	if err != nil {
		return err
	}
	if err := os.Setenv(targetEnvKey, string(target)); err != nil {
		return err
	}
	if c.EvacuateCgroup2 != "" {
		os.Setenv(evacuateEnvKey, "1")
	}
	return parent.Parent(parent.Opt{
		PipeFDEnvKey:             pipeFDEnvKey,
		ChildUseActivationEnvKey: childUseActivationEnvKey,
		StateDir:                 c.StateDir,
		StateDirEnvKey:           stateDirEnvKey,
		NetworkDriver:            netDriver,
		PortDriver:               portDriver,
		PublishPorts:             c.Publish,
		CreatePIDNS:              true,
		CreateCgroupNS:           true,
		CreateUTSNS:              true,
		CreateIPCNS:              true,
		ParentEUIDEnvKey:         parentEUIDEnvKey,
		ParentEGIDEnvKey:         parentEGIDEnvKey,
		// rslave is refused where the host's root has private propagation (as here); private
		// is what a node needs: nothing mounted inside should leak to the host.
		Propagation:     "rprivate",
		EvacuateCgroup2: c.EvacuateCgroup2,
	})
}

// RunChild is the body of the rootlesskit child: it finishes the namespace (copy-up, network,
// ports) and then runs the target command, reaping orphans as the PID namespace's init.
func RunChild() error {
	var target []string
	if err := json.Unmarshal([]byte(os.Getenv(targetEnvKey)), &target); err != nil || len(target) == 0 {
		return errors.New("namespace child: no target command in the environment")
	}
	// The keys stay set: the child re-execs itself once to gain its capabilities.
	evacuate := os.Getenv(evacuateEnvKey) != ""
	return child.Child(child.Opt{
		PipeFDEnvKey:              pipeFDEnvKey,
		RunActivationHelperEnvKey: runActivationHelperEnvKey,
		ChildUseActivationEnvKey:  childUseActivationEnvKey,
		StateDirEnvKey:            stateDirEnvKey,
		TargetCmd:                 target,
		NetworkDriver:             slirp4netns.NewChildDriver(),
		CopyUpDriver:              tmpfssymlink.NewChildDriver(),
		CopyUpDirs:                CopyUpDirs,
		PortDriver:                newPortChild(),
		MountProcfs:               true,
		Propagation:               "rprivate",
		Reaper:                    true,
		EvacuateCgroup2:           evacuate,
	})
}

// ChildPID returns the PID of the running namespace's child, read from the state directory.
// rootlesskit writes child_pid only after the child is fully configured.
func ChildPID(stateDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, parent.StateFileChildPID))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("the node's namespace is not running (no %s): start it with u7s init, or the u7s service",
				filepath.Join(stateDir, parent.StateFileChildPID))
		}
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("bad child_pid in %s: %w", stateDir, err)
	}
	if err := syscallKill0(pid); err != nil {
		return 0, fmt.Errorf("the node's namespace process %d is gone (stale %s): restart the node", pid, stateDir)
	}
	return pid, nil
}

// EnterArgs returns the nsenter command line that runs args inside every namespace of pid,
// keeping the caller's credentials: run as the namespace's owner, it is root inside.
func EnterArgs(pid int, args ...string) []string {
	return append([]string{"nsenter", "-t", strconv.Itoa(pid),
		"--user", "--preserve-credentials", "--mount", "--net", "--pid", "--ipc", "--uts", "--cgroup",
		"--wd=/", "--"}, args...)
}

// WaitFile waits until path exists, or the deadline passes, or alive reports false.
func WaitFile(path string, timeout time.Duration, alive func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
