package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/cis"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/controlplane"
	"github.com/u7s/u7s/internal/crio"
	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/signing"
	"github.com/u7s/u7s/internal/watch"
)

func newCheckCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "check",
		Short: "Check the node against security benchmarks",
		Args:  cobra.NoArgs,
	}
	c.AddCommand(newCheckCISCommand(), newCheckAllCommand())
	return c
}

// newCheckAllCommand is `u7s check all`: what u7s-watch.timer runs (package watch).
func newCheckAllCommand() *cobra.Command {
	var asJSON, noJournal, recordBaseline, removeUnsigned bool
	textfile := filepath.Join(paths.WatchDir, "u7s-watch.prom")
	c := &cobra.Command{
		Use:   "all",
		Short: "Look at the node again (as root): the CIS benchmark, the audit log since the last run, drift of the node's files, unsigned images, writes into containers",
		Long: `Runs every check of the watch (u7s-watch.timer runs it hourly) and reports each finding to the
journal (SYSLOG_IDENTIFIER=u7s-watch, U7S_FINDING=<id>, with its priority), to stdout, and as a
Prometheus textfile for a node exporter (--textfile). Exits non-zero when a finding is critical,
so that the timer's service fails and systemctl --failed, or any monitoring of units, shows it.
Checks:
` + checkList(),
		Example: `  u7s check all
  u7s check all --json | jq '.findings[] | select(.priority == "critical")'
  journalctl -t u7s-watch -p warning`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return errors.New("u7s check all runs as root (it reads the audit log and the containers' storage)")
			}
			n, err := config.Load()
			if err != nil {
				return err
			}
			if recordBaseline {
				if err := watch.RecordNodeBaseline(); err != nil {
					return err
				}
				fmt.Fprintf(c.OutOrStdout(), "recorded the node's files as they are now (%s)\n", watch.BaselineFile)
				return nil
			}
			if removeUnsigned {
				return removeUnsignedImages(c, n)
			}
			exe, err := os.Executable()
			if err != nil {
				exe = paths.Binary
			}
			runner := cis.Runner{KubeBench: paths.KubeBench, ConfigDir: paths.KubeBenchCfg}
			checks := watch.Checks(watchOptions(n, func() (*cis.Result, error) {
				r, _, err := runner.Run(exe, c.ErrOrStderr())
				return r, err
			}))
			names := make([]string, len(checks))
			for i, ch := range checks {
				names[i] = ch.Name
			}
			fmt.Fprintf(c.ErrOrStderr(), "checks: %s\n", strings.Join(names, ", "))
			findings, failed, err := watch.Run(c.Context(), checks, filepath.Join(paths.WatchDir, "state.json"))
			if err != nil {
				return err
			}
			var b bytes.Buffer
			if err := watch.Textfile(&b, findings, names, failed); err != nil {
				return err
			}
			if textfile != "" {
				if err := os.MkdirAll(filepath.Dir(textfile), 0o755); err != nil {
					return err
				}
				if err := fsutil.WriteFileAtomic(textfile, b.Bytes(), 0o644); err != nil {
					return fmt.Errorf("writing %s: %w", textfile, err)
				}
			}
			if !noJournal {
				if err := watch.ToJournal(findings); err != nil {
					return err
				}
			}
			out := c.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(map[string]any{"checks": names, "findings": findings}); err != nil {
					return err
				}
			} else {
				for _, f := range findings {
					fmt.Fprintln(out, f)
				}
				fmt.Fprintf(out, "%d finding(s)\n", len(findings))
			}
			if watch.AnyCritical(findings) {
				return errors.New("critical findings (above; journalctl -t u7s-watch -p crit)")
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the findings as JSON")
	c.Flags().BoolVar(&noJournal, "no-journal", false, "do not send the findings to the journal")
	c.Flags().StringVar(&textfile, "textfile", textfile, "where to write the Prometheus textfile (empty: nowhere)")
	c.Flags().BoolVar(&removeUnsigned, "remove-unsigned-images", false, "remove the images the images check finds unsigned from the node's storage (delete the pods that run them first) and check nothing else")
	c.Flags().BoolVar(&recordBaseline, "record-baseline", false, "record the node's watched files as they are now (after a change you made on purpose) and check nothing")
	return c
}

func watchOptions(n *config.Node, runCIS func() (*cis.Result, error)) watch.Options {
	o := watch.Options{ControlPlane: n.Role == config.ControlPlane, CIS: runCIS, AuditLog: controlplane.AuditLog,
		CRISocket: paths.CRIOSocket, StorageRoot: crio.DefaultDirs().StorageRoot(),
		Generated:     func() (map[string][]byte, error) { return crio.Files(n, crio.DefaultDirs()) },
		GeneratedMode: crio.FileMode,
		Baseline:      watch.BaselineFile, Watched: watch.NodeFiles(),
	}
	if n.ImageSigningKey != "" {
		o.SigningHosts = crio.SignatureHosts(n)
		o.Verify = func(ctx context.Context, ref string) (string, error) {
			refused, err := signing.Verify(ctx, []string{ref}, n.ImageSigningKey)
			if err != nil || len(refused) == 0 {
				return "", err
			}
			return refused[0], nil
		}
	}
	return o
}

// removeUnsignedImages is u7s check all --remove-unsigned-images.
func removeUnsignedImages(c *cobra.Command, n *config.Node) error {
	o := watchOptions(n, nil)
	if o.Verify == nil {
		return errors.New("this node runs images without signatures (it has no image-signing key): there is nothing to remove")
	}
	imgs, err := watch.StoredImages(c.Context(), o.CRISocket)
	if err != nil {
		return err
	}
	found, unsigned := watch.UnsignedImages(c.Context(), imgs, o.SigningHosts, o.Verify)
	for _, f := range found {
		fmt.Fprintln(c.OutOrStdout(), f)
	}
	if err := watch.RemoveImages(c.Context(), o.CRISocket, unsigned); err != nil {
		return fmt.Errorf("%w (a running container's image is removed after its pod is deleted)", err)
	}
	fmt.Fprintf(c.OutOrStdout(), "removed %d unsigned image(s)\n", len(unsigned))
	return nil
}

func checkList() string {
	var b strings.Builder
	// Every check a node may run: a control plane that runs only signed images.
	for _, ch := range watch.Checks(watchOptions(&config.Node{Role: config.ControlPlane, ImageSigningKey: paths.ImageSigningKey}, nil)) {
		fmt.Fprintf(&b, "  %-11s %s\n", ch.Name, ch.Doc)
	}
	return b.String()
}

// inNodeFlag marks the re-execution of u7s check cis inside the node's namespaces.
const inNodeFlag = cis.InNodeFlag

func newCheckCISCommand() *cobra.Command {
	o := &cis.Runner{}
	// inNode: this process is the re-execution inside the node's namespace; it writes
	// kube-bench's JSON to stdout and nothing else.
	var inNode bool
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
			if inNode {
				return o.InNode(c.OutOrStdout(), c.ErrOrStderr())
			}
			exe, err := os.Executable()
			if err != nil {
				exe = paths.Binary
			}
			return o.OnHost(exe, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	f := c.Flags()
	f.StringVar(&o.KubeBench, "kube-bench", paths.KubeBench, "the kube-bench binary (it must be readable inside the node's namespace)")
	f.StringVar(&o.ConfigDir, "config-dir", paths.KubeBenchCfg, "kube-bench's upstream cfg/ directory, the profile is derived from it")
	f.BoolVar(&o.JSON, "json", false, "print kube-bench's JSON result unchanged instead of the report")
	f.BoolVar(&inNode, inNodeFlag, false, "run kube-bench here: inside the node's namespace")
	f.StringSliceVar(&o.Targets, "targets", nil, "the benchmark's targets (default: by the node's role)")
	_ = f.MarkHidden(inNodeFlag)
	_ = f.MarkHidden("targets")
	return c
}
