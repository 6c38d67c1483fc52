package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/cis"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/namespace"
	"github.com/u7s/u7s/internal/node"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/version"
)

func newCheckCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "check",
		Short: "Check the node against security benchmarks",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(newCheckCISCommand())
	return c
}

type cisOptions struct {
	kubeBench, configDir string
	json                 bool
	// inNode: this process is the re-execution inside the node's namespace; it writes
	// kube-bench's JSON to stdout and nothing else.
	inNode  bool
	targets []string
}

// inNodeFlag marks the re-execution of u7s check cis inside the node's namespaces.
const inNodeFlag = "in-node"

func newCheckCISCommand() *cobra.Command {
	o := &cisOptions{}
	c := &cobra.Command{
		Use:   "cis",
		Short: "Run the CIS Kubernetes benchmark (kube-bench, u7s profile) against this node (as root)",
		Long: `Runs kube-bench inside the node's namespaces with the u7s profile ` + cis.Benchmark + `,
generated from kube-bench's own cfg/` + cis.Upstream + `: its component definitions point at the node's
kubeadm layout, and the checks that cannot apply to a rootless node are reported as not
applicable, with the reason. A control plane runs the master, controlplane, etcd, node and
policies targets, a worker the node target. Prints every FAIL and WARN and the totals; exits
non-zero when a check fails.`,
		Example: `  u7s check cis
  u7s check cis --json | jq '.Totals'`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.inNode {
				return runKubeBenchInNode(o, c.OutOrStdout(), c.ErrOrStderr())
			}
			return checkCIS(o, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	f := c.Flags()
	f.StringVar(&o.kubeBench, "kube-bench", paths.KubeBench, "the kube-bench binary (it must be readable inside the node's namespace)")
	f.StringVar(&o.configDir, "config-dir", paths.KubeBenchCfg, "kube-bench's upstream cfg/ directory, the profile is derived from it")
	f.BoolVar(&o.json, "json", false, "print kube-bench's JSON result unchanged instead of the report")
	f.BoolVar(&o.inNode, inNodeFlag, false, "run kube-bench here: inside the node's namespace")
	f.StringSliceVar(&o.targets, "targets", nil, "the benchmark's targets (default: by the node's role)")
	_ = f.MarkHidden(inNodeFlag)
	_ = f.MarkHidden("targets")
	return c
}

// checkKubeBench names what is missing for kube-bench, and the fix. inNode: the host had it,
// the node's root (u7s-admin on the host) cannot see it.
func checkKubeBench(o *cisOptions, inNode bool) error {
	missing := func(what, path string) error {
		if inNode {
			return fmt.Errorf("%s %s is not readable inside the node's namespace, whose root is %s on the host: use the installed one (make components install)",
				what, path, paths.User)
		}
		return fmt.Errorf("%s is not installed: no %s; build and install it with: make components install", what, path)
	}
	if st, err := os.Stat(o.kubeBench); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return missing("kube-bench", o.kubeBench)
	}
	for _, p := range []string{filepath.Join(o.configDir, "config.yaml"), filepath.Join(o.configDir, cis.Upstream)} {
		if _, err := os.Stat(p); err != nil {
			return missing("kube-bench's cfg/", p)
		}
	}
	return nil
}

// checkCIS runs on the host: u7s check cis again inside the node, then the report.
func checkCIS(o *cisOptions, out, errOut io.Writer) error {
	n, err := config.Load()
	if err != nil {
		return err
	}
	owner, err := node.LookupOwner()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 && os.Geteuid() != owner.UID {
		return fmt.Errorf("u7s check cis must run as root or as %s", paths.User)
	}
	if err := checkKubeBench(o, false); err != nil {
		return err
	}
	if node.SupervisorPID() == 0 {
		return errors.New("the node is not running (u7s status): start it with u7s start, then run u7s check cis again")
	}
	if _, err := namespace.ChildPID(paths.RootlesskitStateDir); err != nil {
		return fmt.Errorf("the node is not ready (u7s status): %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		exe = paths.Binary
	}
	targets := o.targets
	if len(targets) == 0 {
		targets = cis.Targets(n.Role == config.ControlPlane)
	}
	cmd, err := node.Command(owner, exe, "check", "cis", "--"+inNodeFlag,
		"--kube-bench", o.kubeBench, "--config-dir", o.configDir, "--targets", strings.Join(targets, ","))
	if err != nil {
		return fmt.Errorf("the node is not running (u7s status): %w", err)
	}
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, errOut
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && (ee.ExitCode() == 126 || ee.ExitCode() == 127) {
			return fmt.Errorf("cannot run %s inside the node's namespace (exit %d): it must be readable by %s there, e.g. the installed %s (make install)",
				exe, ee.ExitCode(), paths.User, paths.Binary)
		}
		// The run inside printed its error.
		return fmt.Errorf("u7s check cis inside the node failed (%w)", err)
	}
	r, err := cis.ParseResult(stdout.Bytes())
	if err != nil {
		return err
	}
	if o.json {
		if _, err := out.Write(stdout.Bytes()); err != nil {
			return err
		}
	} else {
		cis.WriteReport(out, r)
	}
	if failed := r.FailedIDs(); len(failed) > 0 {
		return fmt.Errorf("CIS benchmark %s: %d check(s) failed: %s", cis.Benchmark, len(failed), strings.Join(failed, ", "))
	}
	return nil
}

// runKubeBenchInNode runs inside the node's namespaces: writes the u7s profile into a temporary
// directory, runs kube-bench on it and copies its JSON to out.
func runKubeBenchInNode(o *cisOptions, out, errOut io.Writer) error {
	if !insideUserNamespace() {
		return fmt.Errorf("--%s is for u7s check cis itself, inside the node's namespace", inNodeFlag)
	}
	if err := checkKubeBench(o, true); err != nil {
		return err
	}
	if len(o.targets) == 0 {
		return errors.New("no --targets")
	}
	if missing := cis.MissingProcesses(o.targets); len(missing) > 0 {
		return fmt.Errorf("the node is not up yet, %s not running inside it: wait until it is Ready (kubectl get nodes) and run u7s check cis again",
			strings.Join(missing, ", "))
	}
	dir, err := os.MkdirTemp("", "u7s-cis-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	profile := filepath.Join(dir, "cfg")
	if err := cis.WriteProfile(o.configDir, profile, cis.DiscoverLayout()); err != nil {
		return fmt.Errorf("writing the u7s profile: %w", err)
	}
	if v, err := exec.Command(o.kubeBench, "version").Output(); err == nil && strings.TrimSpace(string(v)) != version.Pinned.KubeBench {
		fmt.Fprintf(errOut, "u7s: warning: %s is kube-bench %s, the profile is made for %s\n",
			o.kubeBench, strings.TrimSpace(string(v)), version.Pinned.KubeBench)
	}
	fmt.Fprintf(errOut, "u7s: running kube-bench (%s, targets %s) inside the node; this takes a few minutes\n",
		cis.Benchmark, strings.Join(o.targets, ","))
	result := filepath.Join(dir, "result.json")
	cmd := exec.Command(o.kubeBench, "run", "--config-dir", profile, "--benchmark", cis.Benchmark,
		"--targets", strings.Join(o.targets, ","), "--json", "--outputfile", result)
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
