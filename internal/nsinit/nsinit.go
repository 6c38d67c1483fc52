// Package nsinit is the first program inside the node's namespace (the rootlesskit child's
// target): it finishes the mounts and the network the node needs, then runs cri-o and keeps
// the kubelet running, until it is told to stop.
package nsinit

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/crio"
	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/kubelet"
	"github.com/u7s/u7s/internal/paths"
)

// Run is the body of `u7s namespace-init`.
func Run() error {
	log.SetPrefix("u7s namespace-init: ")
	n, err := config.Load()
	if err != nil {
		return err
	}
	cg, err := cgroups.For(n.Cgroup)
	if err != nil {
		return err
	}
	if err := cg.EnterNamespace(); err != nil {
		return err
	}
	if err := Mounts(n); err != nil {
		return err
	}
	if err := Network(n); err != nil {
		return err
	}

	ctx, cancel := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer cancel()

	d := crio.DefaultDirs()
	if err := crio.WriteFiles(n, d); err != nil {
		return fmt.Errorf("writing cri-o's configuration: %w", err)
	}
	crioLog, err := openLog("crio.log")
	if err != nil {
		return err
	}
	c := crio.Command(n, d, crioLog)
	start := time.Now()
	if err := c.Start(); err != nil {
		return fmt.Errorf("starting cri-o: %w", err)
	}
	crioDone := make(chan error, 1)
	go func() { crioDone <- c.Wait() }()
	alive := func() error {
		select {
		case err := <-crioDone:
			return fmt.Errorf("cri-o exited (%v): see %s", err, filepath.Join(paths.LogDir, "crio.log"))
		default:
			return nil
		}
	}
	if err := crio.WaitReady(ctx, d.Socket(), 60*time.Second, alive); err != nil {
		_ = c.Process.Kill()
		return err
	}
	log.Printf("cri-o is ready (%.1fs)", time.Since(start).Seconds())
	if err := fsutil.WriteFileAtomic(paths.ReadyFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return err
	}

	kubeletLog, err := openLog("kubelet.log")
	if err != nil {
		return err
	}
	r := &kubelet.Runner{Binary: filepath.Join(paths.NodeBin, "kubelet"), Log: kubeletLog}
	kubeletDone := make(chan struct{})
	go func() { r.Run(ctx); close(kubeletDone) }()

	select {
	case <-ctx.Done():
		log.Printf("stopping")
	case err := <-crioDone:
		cancel()
		<-kubeletDone
		os.Remove(paths.ReadyFile)
		return fmt.Errorf("cri-o exited: %v", err)
	}
	<-kubeletDone
	_ = c.Process.Signal(unix.SIGTERM)
	select {
	case <-crioDone:
	case <-time.After(20 * time.Second):
		_ = c.Process.Kill()
	}
	os.Remove(paths.ReadyFile)
	return nil
}

func openLog(name string) (*os.File, error) {
	if err := os.MkdirAll(paths.LogDir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(paths.LogDir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}
