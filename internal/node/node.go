// Package node manages the running node from the host: starting and stopping its supervisor,
// and running commands inside its namespace as u7s-admin.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/u7s/u7s/internal/namespace"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/service"
	"github.com/u7s/u7s/systemd"
)

// Owner is the node's user, looked up on the host.
type Owner struct{ UID, GID int }

// LookupOwner finds u7s-admin.
func LookupOwner() (Owner, error) {
	u, err := user.Lookup(paths.User)
	if err != nil {
		return Owner{}, fmt.Errorf("user %s does not exist: run u7s init or u7s join first", paths.User)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return Owner{}, fmt.Errorf("user %s has a non-numeric uid %q", paths.User, u.Uid)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return Owner{}, fmt.Errorf("user %s has a non-numeric gid %q", paths.User, u.Gid)
	}
	return Owner{uid, gid}, nil
}

// credential makes a child run as the owner when the caller is root.
func (o Owner) sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{}
	if os.Geteuid() == 0 {
		a.Credential = &syscall.Credential{Uid: uint32(o.UID), Gid: uint32(o.GID), Groups: []uint32{}}
	}
	return a
}

func (o Owner) env() []string {
	return append(os.Environ(), "HOME="+paths.Home, "USER="+paths.User, "LOGNAME="+paths.User,
		"XDG_RUNTIME_DIR="+paths.RunDir)
}

// StartDetached starts `u7s supervise` as the owner in its own session, for hosts where
// systemd does not run the u7s unit.
func StartDetached(o Owner, exe string) (int, error) {
	logf, err := os.OpenFile(paths.SupervisorLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	_ = os.Chown(paths.SupervisorLog, o.UID, o.GID)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	cmd := exec.Command(exe, "supervise")
	cmd.Dir = "/"
	cmd.Env = o.env()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.SysProcAttr = o.sysProcAttr()
	cmd.SysProcAttr.Setsid = true
	// The kubelet and cri-o give critical pods an oom_score_adj down to -998, and inside a
	// user namespace nothing may lower it below what it inherited: the supervisor starts at
	// -999, set while we are root and inherited at fork (the unit's OOMScoreAdjust does the
	// same under systemd).
	// Where root lacks CAP_SYS_RESOURCE this fails, and the runtime shim raises what pods ask
	// for to what the node may set (package ociruntime).
	if restore, err := lowerOOMScoreAdj(-999); err == nil {
		defer restore()
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting the supervisor: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return pid, nil
}

// WaitReady waits for the namespace to come up, failing early if the supervisor dies.
func WaitReady(pid int, timeout time.Duration) error {
	alive := func() error {
		if err := unix.Kill(pid, 0); err != nil {
			return fmt.Errorf("the supervisor (pid %d) exited: see %s", pid, paths.SupervisorLog)
		}
		// Reap it if it is our child and has exited.
		var ws unix.WaitStatus
		if p, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); p == pid {
			return fmt.Errorf("the supervisor exited (%v): see %s", describe(ws), paths.SupervisorLog)
		}
		return nil
	}
	return namespace.WaitFile(paths.ReadyFile, timeout, alive)
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "signal " + ws.Signal().String()
	}
	return "status " + strconv.Itoa(ws.ExitStatus())
}

// Start starts the node: through systemd where the node is a service (the start job ends when
// the supervisor reports READY=1), else as a detached supervisor; then waits for the
// namespace (cri-o answering inside) for up to timeout.
func Start(ctx context.Context, asService bool, o Owner, timeout time.Duration) (pid int, err error) {
	if pid := SupervisorPID(); pid != 0 {
		return pid, nil
	}
	if asService {
		if err := service.Start(ctx, systemd.Node); err != nil {
			return 0, err
		}
		pid = service.MainPID(ctx, systemd.Node)
	} else {
		exe, err := os.Executable()
		if err != nil {
			return 0, err
		}
		if pid, err = StartDetached(o, exe); err != nil {
			return 0, err
		}
	}
	if err := WaitReady(pid, timeout); err != nil {
		return pid, fmt.Errorf("the node's namespace did not come up: %w", err)
	}
	return pid, nil
}

// StopNode stops the node the way it runs: the systemd unit, or the detached supervisor.
func StopNode(ctx context.Context, asService bool) error {
	if asService && service.Systemd() {
		if err := service.Stop(ctx, systemd.Node); err != nil {
			return err
		}
	}
	return Stop(StopTimeout)
}

// StopTimeout is how long the supervisor gets to stop the kubelet and cri-o before it is killed.
const StopTimeout = 30 * time.Second

// SupervisorPID returns the running supervisor's PID, or 0.
func SupervisorPID() int {
	b, err := os.ReadFile(paths.SupervisorPIDFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || unix.Kill(pid, 0) != nil {
		return 0
	}
	return pid
}

// Stop ends the supervisor: SIGTERM, which it forwards into the namespace so that the kubelet
// and cri-o stop, then SIGKILL after timeout. Killing the namespace's init ends every
// container with it.
func Stop(timeout time.Duration) error {
	pid := SupervisorPID()
	if pid == 0 {
		return nil
	}
	_ = unix.Kill(pid, unix.SIGTERM)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if unix.Kill(pid, 0) != nil {
			return nil
		}
		var ws unix.WaitStatus
		if p, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); p == pid {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return unix.Kill(pid, unix.SIGKILL)
}

// Command returns a command that runs args inside the node's namespaces as the node's root
// (u7s-admin on the host).
func Command(o Owner, args ...string) (*exec.Cmd, error) {
	pid, err := namespace.ChildPID(paths.RootlesskitStateDir)
	if err != nil {
		return nil, err
	}
	full := namespace.EnterArgs(pid, args...)
	nsenter, err := exec.LookPath(full[0])
	if err != nil {
		return nil, errors.New("nsenter not found: install util-linux")
	}
	cmd := exec.Command(nsenter, full[1:]...)
	cmd.Env = o.env()
	cmd.SysProcAttr = o.sysProcAttr()
	return cmd, nil
}

// Run runs args inside the namespace with the given standard streams.
func Run(o Owner, in io.Reader, out, errOut io.Writer, args ...string) error {
	cmd, err := Command(o, args...)
	if err != nil {
		return err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, errOut
	return cmd.Run()
}

// lowerOOMScoreAdj sets this process's oom_score_adj and returns a func that puts it back.
func lowerOOMScoreAdj(v int) (func(), error) {
	const p = "/proc/self/oom_score_adj"
	old, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(v)), 0o644); err != nil {
		return nil, fmt.Errorf("setting oom_score_adj for the node: %w", err)
	}
	return func() { _ = os.WriteFile(p, old, 0o644) }, nil
}

// Kubeadm runs the kubeadm linked into u7s inside the node's namespace, as its root, with this
// process's standard output and error.
func Kubeadm(args ...string) error {
	o, err := LookupOwner()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		exe = paths.Binary
	}
	return Run(o, nil, os.Stdout, os.Stderr, append([]string{exe, "kubeadm"}, args...)...)
}
