package crio

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/u7s/u7s/images"
	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/signing"
)

// WriteFiles writes crio.conf, registries.conf, storage.conf, policy.json and, with a signing
// key, the registries.d file (Files).
func WriteFiles(n *config.Node, d Dirs) error {
	for _, dir := range []string{d.State, filepath.Join(d.State, "crio.conf.d"), filepath.Join(d.State, "registries.conf.d"), d.Run, d.StorageRoot(), filepath.Join(paths.LogDir, "crio-pods")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	files, err := Files(n, d)
	if err != nil {
		return err
	}
	for path, data := range files {
		if path == RegistriesDFile {
			if err := os.MkdirAll(filepath.Dir(RegistriesDFile), 0o755); err != nil {
				return err
			}
		}
		if err := fsutil.WriteFileAtomic(path, data, FileMode); err != nil {
			return err
		}
	}
	if n.ImageSigningKey == "" {
		if err := os.Remove(RegistriesDFile); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// FileMode is the mode of every file Files names.
const FileMode = 0o644

// Files are the files WriteFiles writes at every start of the node, by path on the host, with
// their content: what the watch's drift check expects to find there (package watch).
func Files(n *config.Node, d Dirs) (map[string][]byte, error) {
	conf, err := New(n, d).Marshal()
	if err != nil {
		return nil, fmt.Errorf("encoding crio.conf: %w", err)
	}
	regs, err := marshalTOML(NewRegistries(n.Insecure))
	if err != nil {
		return nil, err
	}
	stor, err := marshalTOML(NewStorage(d))
	if err != nil {
		return nil, err
	}
	policy, err := NodePolicy(n)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{d.ConfigFile(): conf, d.RegistriesFile(): regs, d.StorageFile(): stor, d.PolicyFile(): policy}
	if n.ImageSigningKey != "" {
		if files[RegistriesDFile], err = signing.RegistriesD(SignatureHosts(n)...); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// NodePolicy is the node's containers-policy.json(5): with a signing key, only images from
// the node's registry signed with it; without, any image its registries serve.
func NodePolicy(n *config.Node) ([]byte, error) {
	if n.ImageSigningKey == "" {
		return []byte(Policy), nil
	}
	return signing.Policy(images.RegistryHost(n.Registry), n.ImageSigningKey)
}

// RegistriesDFile tells containers/image where a registry keeps its signatures. cri-o has no
// option for it and reads $HOME/.config/containers/registries.d first (HOME is the node
// user's), so the host's /etc/containers never decides.
var RegistriesDFile = filepath.Join(paths.Home, ".config/containers/registries.d/u7s.yaml")

// SignatureHosts are where the node's images are pulled from, where their signatures are
// looked up: the registry's host and the location registries.conf sends it to.
func SignatureHosts(n *config.Node) []string {
	h := images.RegistryHost(n.Registry)
	hosts := []string{h}
	for _, r := range NewRegistries(n.Insecure).Registry {
		if r.Prefix == h && r.Location != h {
			hosts = append(hosts, r.Location)
		}
	}
	return hosts
}

// Command returns cri-o's command with its environment: rootless mode (_CRIO_ROOTLESS) as the
// node's cgroup driver says.
func Command(n *config.Node, d Dirs, log io.Writer) *exec.Cmd {
	cmd := exec.Command(filepath.Join(paths.NodeBin, "crio"),
		"--config", d.ConfigFile(), "--config-dir", filepath.Join(d.State, "crio.conf.d"), "--log-level", "info",
		// Only u7s's registries.conf: the host's may allow other registries or plain HTTP.
		"--registries-conf", d.RegistriesFile(), "--registries-conf-dir", filepath.Join(d.State, "registries.conf.d"))
	env := append(os.Environ(),
		"CONTAINERS_STORAGE_CONF="+d.StorageFile(),
		"PATH=/usr/libexec/u7s/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	)
	if cgroups.Must(n.Cgroup).CrioRootless() {
		env = append(env, "_CRIO_ROOTLESS=1")
	}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	return cmd
}

// WaitReady waits until cri-o answers a CRI Version call on socket.
func WaitReady(ctx context.Context, socket string, timeout time.Duration, alive func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if _, err := os.Stat(socket); err == nil {
			if last = version(ctx, socket); last == nil {
				return nil
			}
		} else {
			last = err
		}
		if alive != nil {
			if err := alive(); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cri-o did not answer on %s within %s: %v", socket, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func version(ctx context.Context, socket string) error {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = runtimeapi.NewRuntimeServiceClient(conn).Version(cctx, &runtimeapi.VersionRequest{})
	return err
}
