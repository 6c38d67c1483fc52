package registry

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func newTestRegistry() http.Handler {
	return registry.New(registry.Logger(log.New(io.Discard, "", 0)))
}

// push puts a random image at ref.
func push(t *testing.T, c *client, ref string) {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithTransport(c.transport()), remote.WithAuthFromKeychain(c.keychain)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

// localRegistryClient answers registry.local:<port> from srv, a plain-HTTP server.
func localRegistryClient(t *testing.T, srv *httptest.Server) (*client, string) {
	addr := srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	host := "registry.local:" + port
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		if a == host {
			a = addr
		}
		return (&net.Dialer{}).DialContext(ctx, network, a)
	}
	return &client{base: tr, keychain: containersKeychain{}}, host
}

func TestCheckHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(newTestRegistry())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the unknown-CA case makes the server log a handshake error
	srv.StartTLS()
	defer srv.Close()
	c := &client{base: srv.Client().Transport, keychain: containersKeychain{}}
	host := srv.Listener.Addr().String()
	present := host + "/k8s-p10/pause:3.10.1"
	push(t, c, present)

	refs := []string{present, host + "/k8s-p10/etcd:3.6.6-0", host + "/k8s-p10/pause:3.9"}
	missing, err := c.check(context.Background(), refs)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if want := refs[1:]; !reflect.DeepEqual(missing, want) {
		t.Errorf("missing = %q, want %q", missing, want)
	}

	// Without the test CA the certificate does not verify: no silent fallback to HTTP.
	strict := &client{base: http.DefaultTransport, keychain: containersKeychain{}}
	_, err = strict.check(context.Background(), refs)
	t.Logf("unknown CA: %v", err)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the image registry "+host) {
		t.Errorf("check with an unknown CA: err = %v, want a 'cannot reach' error", err)
	}
}

func TestCheckLocalRegistryPlainHTTP(t *testing.T) {
	srv := httptest.NewServer(newTestRegistry())
	defer srv.Close()
	c, host := localRegistryClient(t, srv)
	push(t, c, host+"/k8s-c10f1/kube-apiserver:v1.35.8")

	refs := []string{host + "/k8s-c10f1/kube-apiserver:v1.35.8", host + "/k8s-c10f1/coredns:v1.13.1"}
	missing, err := c.check(context.Background(), refs)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if want := refs[1:]; !reflect.DeepEqual(missing, want) {
		t.Errorf("missing = %q, want %q", missing, want)
	}

	// The same server under another name is refused: plain HTTP is for registry.local only.
	other := strings.Replace(refs[0], host, srv.Listener.Addr().String(), 1)
	_, err = c.check(context.Background(), []string{other})
	t.Logf("plain HTTP elsewhere: %v", err)
	if err == nil || !strings.Contains(err.Error(), "refusing plain HTTP") {
		t.Errorf("check over plain HTTP to %s: err = %v, want a refusal", other, err)
	}
}

func TestCheckCredentialsFromAuthFile(t *testing.T) {
	inner := newTestRegistry()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "u7s" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"log in"}]}`, http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c, host := localRegistryClient(t, srv)
	ref := host + "/k8s-p10/pause:3.10.1"

	authFile := filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte("u7s:secret"))
	if err := os.WriteFile(authFile, fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, host, auth), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", authFile)
	push(t, c, ref)
	missing, err := c.check(context.Background(), []string{ref, host + "/k8s-p10/etcd:3.6.6-0"})
	if err != nil || len(missing) != 1 {
		t.Fatalf("check with credentials: missing %q, err %v; want only etcd missing", missing, err)
	}

	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "none.json"))
	_, err = c.check(context.Background(), []string{ref})
	t.Logf("no credentials: %v", err)
	if err == nil || !strings.Contains(err.Error(), "refused access") {
		t.Errorf("check without credentials: err = %v, want 'refused access'", err)
	}
}

func TestCheckUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = Check(context.Background(), []string{addr + "/k8s-p10/pause:3.10.1"})
	t.Logf("closed port: %v", err)
	if err == nil {
		t.Fatal("Check against a closed port succeeded")
	}
	for _, want := range []string{"cannot reach the image registry " + addr, "/etc/hosts", EnvVar} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestCheckNotARegistry(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	c, host := localRegistryClient(t, srv)
	missing, err := c.check(context.Background(), []string{host + "/k8s-p10/pause:3.10.1"})
	t.Logf("not a registry: %v", err)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the image registry") || missing != nil {
		t.Errorf("check against a web server that is no registry: missing %q, err %v; want 'cannot reach'", missing, err)
	}
}

func TestCheckInvalidReference(t *testing.T) {
	if _, err := Check(context.Background(), []string{"registry.local/K8s/pause:3.10.1"}); err == nil {
		t.Error("Check accepted an invalid reference")
	}
}
