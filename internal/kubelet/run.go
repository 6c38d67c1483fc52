package kubelet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/u7s/u7s/internal/paths"
)

const (
	kubeconfig          = paths.KubernetesDir + "/kubelet.conf"
	bootstrapKubeconfig = paths.KubernetesDir + "/bootstrap-kubelet.conf"
)

// Args returns the kubelet's command line: the files kubeadm wrote, and the flags of its
// kubeadm-flags.env (KUBELET_KUBEADM_ARGS), as the kubeadm systemd drop-in would pass them.
func Args(flagsEnv []byte) []string {
	args := []string{
		"--config=" + ConfigFile,
		"--kubeconfig=" + kubeconfig,
		"--bootstrap-kubeconfig=" + bootstrapKubeconfig,
	}
	for _, line := range strings.Split(string(flagsEnv), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || k != "KUBELET_KUBEADM_ARGS" {
			continue
		}
		args = append(args, strings.Fields(strings.Trim(v, `"'`))...)
	}
	return args
}

// Runner keeps the kubelet running inside the namespace. kubeadm cannot (re)start it
// without systemd, so the runner starts it once kubeadm's kubelet-start phase has written
// its files, and restarts it when they change or it exits.
type Runner struct {
	Binary string
	Log    io.Writer
	Logf   func(format string, args ...any)
}

func (r *Runner) filesReady() ([]byte, bool) {
	cfg, err := os.ReadFile(ConfigFile)
	if err != nil {
		return nil, false
	}
	_, errK := os.Stat(kubeconfig)
	_, errB := os.Stat(bootstrapKubeconfig)
	if errK != nil && errB != nil {
		return nil, false
	}
	flags, _ := os.ReadFile(FlagsFile)
	sum := sha256.Sum256(append(append(cfg, 0), flags...))
	return sum[:], true
}

// Run blocks until ctx ends, then stops the kubelet.
func (r *Runner) Run(ctx context.Context) {
	if r.Logf == nil {
		r.Logf = log.Printf
	}
	var (
		cmd     *exec.Cmd
		exited  chan error
		running []byte
		backoff = time.Second
		started time.Time
	)
	stop := func() {
		if cmd == nil {
			return
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		cmd = nil
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			stop()
			return
		case err := <-exited:
			if time.Since(started) > 30*time.Second {
				backoff = time.Second // a kubelet that stayed up a while earns a fresh backoff
			}
			r.Logf("kubelet exited: %v; restarting in %s", err, backoff)
			cmd, running = nil, nil
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		case <-tick.C:
		}
		sum, ok := r.filesReady()
		if !ok {
			continue
		}
		if cmd != nil && bytes.Equal(sum, running) {
			continue
		}
		if cmd != nil {
			r.Logf("kubelet configuration changed: restarting the kubelet")
			stop()
		}
		// kubeadm writes it 0644 at init, join and upgrade (each a restart here); the benchmark
		// wants 0600 (CIS 4.1.9).
		if err := os.Chmod(ConfigFile, 0o600); err != nil {
			r.Logf("kubelet: restricting %s to 0600: %v", ConfigFile, err)
		}
		flags, _ := os.ReadFile(FlagsFile)
		for _, d := range []string{RootDir, VolumePluginDir, filepath.Join(paths.KubernetesDir, "manifests")} {
			_ = os.MkdirAll(d, 0o755)
		}
		c := exec.Command(r.Binary, Args(flags)...)
		c.Stdout, c.Stderr = r.Log, r.Log
		if err := c.Start(); err != nil {
			r.Logf("starting the kubelet: %v", err)
			continue
		}
		r.Logf("kubelet started (pid %d)", c.Process.Pid)
		cmd, running, started = c, sum, time.Now()
		exited = make(chan error, 1)
		go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(c, exited)
	}
}
