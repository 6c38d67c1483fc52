package registry

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeImages is a CRI ImageService that knows some images.
type fakeImages struct {
	runtimeapi.UnimplementedImageServiceServer
	mu     sync.Mutex
	sizes  map[string]uint64
	pulled []*runtimeapi.PullImageRequest
}

func (f *fakeImages) PullImage(_ context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulled = append(f.pulled, req)
	if _, ok := f.sizes[req.GetImage().GetImage()]; !ok {
		return nil, status.Errorf(codes.NotFound, "%s: manifest unknown", req.GetImage().GetImage())
	}
	return &runtimeapi.PullImageResponse{ImageRef: "id-" + req.GetImage().GetImage()}, nil
}

func (f *fakeImages) ImageStatus(_ context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := strings.TrimPrefix(req.GetImage().GetImage(), "id-")
	return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: req.GetImage().GetImage(), Size: f.sizes[ref]}}, nil
}

func TestPull(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "crio.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeImages{sizes: map[string]uint64{
		"registry.local/k8s-p10/pause:3.10.1": 320_000,
		"registry.local/k8s-p10/etcd:3.6.6-0": 23_456_789,
	}}
	srv := grpc.NewServer()
	runtimeapi.RegisterImageServiceServer(srv, fake)
	go srv.Serve(l)
	defer srv.Stop()
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "none.json"))

	var out bytes.Buffer
	refs := []string{"registry.local/k8s-p10/pause:3.10.1", "registry.local/k8s-p10/coredns:v1.13.1", "registry.local/k8s-p10/etcd:3.6.6-0"}
	err = Pull(context.Background(), sock, refs, &out)
	t.Logf("output:\n%serror: %v", out.String(), err)
	if err == nil || !strings.Contains(err.Error(), "coredns:v1.13.1") || strings.Contains(err.Error(), "etcd") {
		t.Errorf("Pull error = %v, want one naming only the coredns image", err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 3 ||
		!strings.HasPrefix(lines[0], "registry.local/k8s-p10/pause:3.10.1 320.0 kB in ") ||
		lines[1] != "registry.local/k8s-p10/coredns:v1.13.1 FAILED" ||
		!strings.HasPrefix(lines[2], "registry.local/k8s-p10/etcd:3.6.6-0 23.5 MB in ") {
		t.Errorf("output lines %q", lines)
	}
	if len(fake.pulled) != 3 || fake.pulled[0].GetAuth() != nil {
		t.Errorf("pull requests %v, want three without credentials", fake.pulled)
	}

	// Credentials from the auth file go along with the request.
	authFile := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(authFile, []byte(`{"auths":{"registry.local":{"auth":"dTdzOnNlY3JldA=="}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", authFile)
	if err := Pull(context.Background(), sock, refs[:1], io.Discard); err != nil {
		t.Fatal(err)
	}
	if a := fake.pulled[3].GetAuth(); a.GetUsername() != "u7s" || a.GetPassword() != "secret" || a.GetServerAddress() != "registry.local" {
		t.Errorf("pull credentials %v, want u7s/secret for registry.local", a)
	}
}

func TestPullNodeDown(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "crio.sock")
	err := Pull(context.Background(), sock, []string{"registry.local/k8s-p10/pause:3.10.1"}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "no cri-o socket at "+sock) || !strings.Contains(err.Error(), "run u7s init") {
		t.Errorf("Pull without a socket: %v", err)
	}

	// A socket nobody listens on any more.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	err = Pull(context.Background(), sock, []string{"registry.local/k8s-p10/pause:3.10.1", "registry.local/k8s-p10/etcd:3.6.6-0"}, &bytes.Buffer{})
	t.Logf("stale socket: %v", err)
	if err == nil || !strings.Contains(err.Error(), "does not answer") || strings.Contains(err.Error(), "etcd") {
		t.Errorf("Pull with a stale socket: %v, want 'does not answer' once", err)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 27_100_000: "27.1 MB", 1_500_000_000: "1.5 GB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
