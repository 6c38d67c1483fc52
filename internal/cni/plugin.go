// Package cni is the "flannel" CNI plugin, built into u7s and run through a symlink named
// flannel in the CNI plugin directory. It does what flannel's own CNI plugin does (that
// binary is not shipped): it reads the lease flanneld wrote to /run/flannel/subnet.env and
// delegates to the bridge plugin with host-local IPAM on the node's subnet.
//
// As a CNI plugin it must write nothing to stdout but the result (or error) JSON.
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/version"
)

// errPluginNotAvailable is the CNI 1.1 STATUS code for "cannot service ADD requests".
const errPluginNotAvailable uint = 50

// Main runs the plugin on the CNI_* environment and stdin. On failure the CNI error JSON
// is already on stdout and the returned error is for the exit status (and stderr).
func Main(args []string) error {
	p := &plugin{stdout: os.Stdout}
	about := fmt.Sprintf("CNI plugin flannel, built into u7s %s for flannel %s", version.U7s, version.Pinned.Flannel)
	funcs := skel.CNIFuncs{Add: p.add, Del: p.del, Check: p.check, Status: p.status}
	// GC stays unimplemented: libcni DELs every stale cached attachment (through this
	// plugin, which drops its state) before it sends GC.
	if e := skel.PluginMainFuncsWithError(funcs, cniversion.All, about); e != nil {
		if err := e.Print(); err != nil {
			return fmt.Errorf("%w (and writing the CNI error to stdout failed: %v)", e, err)
		}
		return e
	}
	return nil
}

type plugin struct {
	stdout io.Writer
	// exec runs delegates; nil means the real plugins in CNI_PATH.
	exec invoke.Exec
}

func (p *plugin) add(args *skel.CmdArgs) error {
	n, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	env, err := LoadSubnetEnv(n.SubnetFile)
	if err != nil {
		return err
	}
	d, err := DelegateConfig(n, env)
	if err != nil {
		return err
	}
	conf, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding the delegate configuration: %w", err)
	}
	// Saved before the delegate runs: if ADD fails halfway, the runtime's DEL still
	// finds what to undo, even after flanneld's subnet file is gone.
	if err := saveState(n.DataDir, args.ContainerID, conf); err != nil {
		return err
	}
	typ := d["type"].(string) // ParseNetConf and DelegateConfig guarantee a string
	res, err := invoke.DelegateAdd(context.Background(), typ, conf, p.exec)
	if err != nil {
		return fmt.Errorf("delegate plugin %s: ADD: %w", typ, err)
	}
	return res.PrintTo(p.stdout)
}

func (p *plugin) del(args *skel.CmdArgs) error {
	n, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	conf, err := loadState(n.DataDir, args.ContainerID)
	if errors.Is(err, fs.ErrNotExist) {
		// Never added, or already deleted: DEL must succeed (CNI spec).
		return nil
	}
	if err != nil {
		return err
	}
	typ, err := pluginType(conf)
	if err != nil {
		// Nothing to delegate to; what ADD made stays until the node restarts.
		fmt.Fprintf(os.Stderr, "flannel: dropping unreadable state of container %s: %v\n", args.ContainerID, err)
		return removeState(n.DataDir, args.ContainerID)
	}
	if err := invoke.DelegateDel(context.Background(), typ, conf, p.exec); err != nil {
		return fmt.Errorf("delegate plugin %s: DEL: %w", typ, err)
	}
	return removeState(n.DataDir, args.ContainerID)
}

func (p *plugin) check(args *skel.CmdArgs) error {
	n, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	conf, err := loadState(n.DataDir, args.ContainerID)
	if errors.Is(err, fs.ErrNotExist) {
		return types.NewError(types.ErrUnknownContainer,
			fmt.Sprintf("flannel has no state for container %s in %s", args.ContainerID, n.DataDir),
			"ADD never ran for it, or DEL already did")
	}
	if err != nil {
		return err
	}
	var d map[string]any
	if err := json.Unmarshal(conf, &d); err != nil {
		return fmt.Errorf("state of container %s: %w", args.ContainerID, err)
	}
	// A pod keeps the address it got; if flanneld since leased another subnet, that
	// address is no longer routed to this node.
	if env, err := LoadSubnetEnv(n.SubnetFile); err == nil {
		want, err := DelegateConfig(n, env)
		if err != nil {
			return err
		}
		if got, now := rangesOf(d), rangesOf(want); got != now {
			return fmt.Errorf("container %s has an address from %s but flannel now leases %s to this node: recreate the pod", args.ContainerID, got, now)
		}
	}
	if n.PrevResult != nil {
		d["prevResult"] = n.PrevResult
	}
	conf, err = json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding the delegate configuration: %w", err)
	}
	typ, err := pluginType(conf)
	if err != nil {
		return err
	}
	if err := invoke.DelegateCheck(context.Background(), typ, conf, p.exec); err != nil {
		return fmt.Errorf("delegate plugin %s: CHECK: %w", typ, err)
	}
	return nil
}

// status reports whether ADD can succeed: flanneld holds a lease and the delegate is ready.
func (p *plugin) status(args *skel.CmdArgs) error {
	n, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	env, err := LoadSubnetEnv(n.SubnetFile)
	if err != nil {
		return types.NewError(errPluginNotAvailable, "flannel is not ready", err.Error())
	}
	d, err := DelegateConfig(n, env)
	if err != nil {
		return err
	}
	conf, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding the delegate configuration: %w", err)
	}
	typ := d["type"].(string)
	if err := invoke.DelegateStatus(context.Background(), typ, conf, p.exec); err != nil {
		return types.NewError(errPluginNotAvailable, fmt.Sprintf("delegate plugin %s is not ready", typ), err.Error())
	}
	return nil
}

func pluginType(conf []byte) (string, error) {
	var c struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(conf, &c); err != nil {
		return "", fmt.Errorf("parsing the delegate configuration: %w", err)
	}
	if c.Type == "" {
		return "", errors.New(`the delegate configuration has no "type"`)
	}
	return c.Type, nil
}

// rangesOf renders the IPAM ranges of a delegate configuration for comparison.
func rangesOf(d map[string]any) string {
	ipam, _ := d["ipam"].(map[string]any)
	b, _ := json.Marshal(ipam["ranges"])
	return string(b)
}

// statePath is where a container's delegate configuration lives between ADD and DEL.
// skel has validated the container ID (no path separators).
func statePath(dataDir, containerID string) string {
	return filepath.Join(dataDir, containerID)
}

func saveState(dataDir, containerID string, conf []byte) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("creating the flannel CNI state directory: %w", err)
	}
	// Atomic, so that DEL never reads a torn file after a crash.
	if err := fsutil.WriteFileAtomic(statePath(dataDir, containerID), conf, 0o600); err != nil {
		return fmt.Errorf("saving flannel CNI state of container %s: %w", containerID, err)
	}
	return nil
}

func loadState(dataDir, containerID string) ([]byte, error) {
	b, err := os.ReadFile(statePath(dataDir, containerID))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading flannel CNI state of container %s: %w", containerID, err)
	}
	return b, err
}

func removeState(dataDir, containerID string) error {
	err := os.Remove(statePath(dataDir, containerID))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing flannel CNI state of container %s: %w", containerID, err)
	}
	return nil
}
