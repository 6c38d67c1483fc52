package cis

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/namespace"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/version"
)

// InNodeFlag marks the re-execution of u7s check cis inside the node's namespaces.
const InNodeFlag = "in-node"

// Runner runs kube-bench with the u7s profile against this host's node.
type Runner struct {
	// KubeBench is the binary, ConfigDir kube-bench's upstream cfg/ the profile is made from.
	KubeBench, ConfigDir string
	// JSON: print kube-bench's JSON unchanged instead of the report.
	JSON bool
	// Targets of the benchmark; empty: by the node's role.
	Targets []string
}

// CheckKubeBench names what is missing for kube-bench, and the fix. inNode: the host had it,
// the node's root (u7s-admin on the host) cannot see it.
func (o Runner) CheckKubeBench(inNode bool) error {
	missing := func(what, path string) error {
		if inNode {
			return fmt.Errorf("%s %s is not readable inside the node's namespace, whose root is %s on the host: use the installed one (make components install)",
				what, path, paths.User)
		}
		return fmt.Errorf("%s is not installed: no %s; build and install it with: make components install", what, path)
	}
	if st, err := os.Stat(o.KubeBench); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return missing("kube-bench", o.KubeBench)
	}
	for _, p := range []string{filepath.Join(o.ConfigDir, "config.yaml"), filepath.Join(o.ConfigDir, Upstream)} {
		if _, err := os.Stat(p); err != nil {
			return missing("kube-bench's cfg/", p)
		}
	}
	return nil
}

// OnHost runs on the host: exe (u7s) check cis again inside the node, then the report; an
// error names the checks that failed.
func (o Runner) OnHost(exe string, out, errOut io.Writer) error {
	r, raw, err := o.Run(exe, errOut)
	if err != nil {
		return err
	}
	if o.JSON {
		if _, err := out.Write(raw); err != nil {
			return err
		}
	} else {
		WriteReport(out, r)
	}
	if failed := r.FailedIDs(); len(failed) > 0 {
		return fmt.Errorf("CIS benchmark %s: %d check(s) failed: %s", Benchmark, len(failed), strings.Join(failed, ", "))
	}
	return nil
}

// Run runs exe (u7s) check cis inside the node and returns kube-bench's result, parsed and as
// it printed it.
func (o Runner) Run(exe string, errOut io.Writer) (*Result, []byte, error) {
	n, err := config.Load()
	if err != nil {
		return nil, nil, err
	}
	owner, err := node.LookupOwner()
	if err != nil {
		return nil, nil, err
	}
	if os.Geteuid() != 0 && os.Geteuid() != owner.UID {
		return nil, nil, fmt.Errorf("u7s check cis must run as root or as %s", paths.User)
	}
	if err := o.CheckKubeBench(false); err != nil {
		return nil, nil, err
	}
	if node.SupervisorPID() == 0 {
		return nil, nil, errors.New("the node is not running (u7s status): start it with u7s start, then run u7s check cis again")
	}
	if _, err := namespace.ChildPID(paths.RootlesskitStateDir); err != nil {
		return nil, nil, fmt.Errorf("the node is not ready (u7s status): %w", err)
	}
	targets := o.Targets
	if len(targets) == 0 {
		targets = Targets(n.Role == config.ControlPlane)
	}
	cmd, err := node.Command(owner, exe, "check", "cis", "--"+InNodeFlag,
		"--kube-bench", o.KubeBench, "--config-dir", o.ConfigDir, "--targets", strings.Join(targets, ","))
	if err != nil {
		return nil, nil, fmt.Errorf("the node is not running (u7s status): %w", err)
	}
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, errOut
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && (ee.ExitCode() == 126 || ee.ExitCode() == 127) {
			return nil, nil, fmt.Errorf("cannot run %s inside the node's namespace (exit %d): it must be readable by %s there, e.g. the installed %s (make install)",
				exe, ee.ExitCode(), paths.User, paths.Binary)
		}
		// The run inside printed its error.
		return nil, nil, fmt.Errorf("u7s check cis inside the node failed (%w)", err)
	}
	r, err := ParseResult(stdout.Bytes())
	if err != nil {
		return nil, nil, err
	}
	return r, stdout.Bytes(), nil
}

// InNode runs inside the node's namespaces (u7s check cis --in-node, started by OnHost): writes
// the u7s profile into a temporary directory, runs kube-bench on it and copies its JSON to out.
func (o Runner) InNode(out, errOut io.Writer) error {
	if !insideUserNamespace() {
		return fmt.Errorf("--%s is for u7s check cis itself, inside the node's namespace", InNodeFlag)
	}
	if err := o.CheckKubeBench(true); err != nil {
		return err
	}
	if len(o.Targets) == 0 {
		return errors.New("no --targets")
	}
	if missing := MissingProcesses(o.Targets); len(missing) > 0 {
		return fmt.Errorf("the node is not up yet, %s not running inside it: wait until it is Ready (kubectl get nodes) and run u7s check cis again",
			strings.Join(missing, ", "))
	}
	dir, err := os.MkdirTemp("", "u7s-cis-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	profile := filepath.Join(dir, "cfg")
	if err := WriteProfile(o.ConfigDir, profile, DiscoverLayout()); err != nil {
		return fmt.Errorf("writing the u7s profile: %w", err)
	}
	if v, err := exec.Command(o.KubeBench, "version").Output(); err == nil && strings.TrimSpace(string(v)) != version.Pinned.KubeBench {
		fmt.Fprintf(errOut, "u7s: warning: %s is kube-bench %s, the profile is made for %s\n",
			o.KubeBench, strings.TrimSpace(string(v)), version.Pinned.KubeBench)
	}
	fmt.Fprintf(errOut, "u7s: running kube-bench (%s, targets %s) inside the node; this takes a few minutes\n",
		Benchmark, strings.Join(o.Targets, ","))
	result := filepath.Join(dir, "result.json")
	cmd := exec.Command(o.KubeBench, "run", "--config-dir", profile, "--benchmark", Benchmark,
		"--targets", strings.Join(o.Targets, ","), "--json", "--outputfile", result)
	cmd.Dir = "/"
	// The checks' shell commands (ps, stat, kubectl, jq) from the system's directories only: the
	// caller's PATH may name directories the node's root cannot read (root's home on the host).
	cmd.Env = append(os.Environ(), "PATH="+benchPath, "KUBECONFIG="+benchKubeconfig(), "TMPDIR="+dir)
	// kube-bench's own output is diagnostics here; stdout carries only the JSON.
	cmd.Stdout, cmd.Stderr = errOut, errOut
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	b, err := os.ReadFile(result)
	if err != nil {
		return fmt.Errorf("kube-bench wrote no result: %w", err)
	}
	_, err = out.Write(b)
	return err
}

const benchPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// benchKubeconfig is what the policies' kubectl uses: the cluster admin's on a control plane,
// the kubelet's elsewhere.
func benchKubeconfig() string {
	if _, err := os.Stat(paths.AdminKubeconfig); err == nil {
		return paths.AdminKubeconfig
	}
	return paths.KubeletKubeconfig
}

// insideUserNamespace: uid 0 is not the host's root, whose map is the identity of every uid.
func insideUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	return strings.Join(strings.Fields(string(b)), " ") != "0 0 4294967295"
}
