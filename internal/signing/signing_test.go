package signing

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/image"
	"github.com/containers/image/v5/signature"
	"github.com/containers/image/v5/types"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testRegistry is an in-process plain-HTTP registry on 127.0.0.1 that records what is written to it.
type testRegistry struct {
	host string

	mu        sync.Mutex
	blobs     []string // digests of the blobs uploaded
	manifests []string // paths of the manifests written
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		switch {
		case (req.Method == http.MethodPut || req.Method == http.MethodPost) && req.URL.Query().Get("digest") != "":
			r.blobs = append(r.blobs, req.URL.Query().Get("digest"))
		case req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/manifests/"):
			r.manifests = append(r.manifests, req.URL.Path)
		}
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.host = srv.Listener.Addr().String()
	// No credentials of this machine's user.
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "auth.json"))
	return r
}

// client signs in this registry only over plain HTTP: a test of the rule itself is
// TestSignRefusesPlainHTTPElsewhere.
func (r *testRegistry) client() signingClient {
	return signingClient{plainHTTP: func(h string) bool { return h == r.host }}
}

func (r *testRegistry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blobs, r.manifests = nil, nil
}

func (r *testRegistry) written() (blobs, manifests []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.blobs), slices.Clone(r.manifests)
}

func ggcrRef(t *testing.T, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// push writes img as ref and returns its digest.
func push(t *testing.T, ref string, img v1.Image) v1.Hash {
	t.Helper()
	if err := remote.Write(ggcrRef(t, ref), img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func pushRandom(t *testing.T, ref string) (v1.Image, v1.Hash) {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img, push(t, ref, img)
}

func headDigest(t *testing.T, ref string) v1.Hash {
	t.Helper()
	d, err := remote.Head(ggcrRef(t, ref))
	if err != nil {
		t.Fatalf("HEAD %s: %v", ref, err)
	}
	return d.Digest
}

func keyPair(t *testing.T, passphrase string) (priv, pub string) {
	t.Helper()
	priv, pub, err := GenerateKeyPair(t.TempDir(), []byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// node evaluates images as a node would: the policy of Policy(host, pub) and a registries.d
// holding RegistriesD(host).
type node struct {
	pc  *signature.PolicyContext
	sys *types.SystemContext
}

func newNode(t *testing.T, host, pub string) node {
	t.Helper()
	pol, err := Policy(host, pub)
	if err != nil {
		t.Fatal(err)
	}
	p, err := signature.NewPolicyFromBytes(pol)
	if err != nil {
		t.Fatalf("containers/image does not read the policy: %v\n%s", err, pol)
	}
	pc, err := signature.NewPolicyContext(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Destroy() })
	dir := t.TempDir()
	regD, err := RegistriesD(host)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "u7s.yaml"), regD, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return node{pc: pc, sys: &types.SystemContext{
		RegistriesDirPath:           dir,
		SystemRegistriesConfPath:    conf,
		BlobInfoCacheDir:            t.TempDir(),
		DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, // the node's registries.conf: the test registry is plain HTTP
	}}
}

// allowed tells whether the node would run ref; err is the policy's reason when not.
func (n node) allowed(t *testing.T, ref string) (bool, error) {
	t.Helper()
	named, err := reference.ParseNamed(ref)
	if err != nil {
		t.Fatal(err)
	}
	ir, err := docker.NewReference(named)
	if err != nil {
		t.Fatal(err)
	}
	src, err := ir.NewImageSource(context.Background(), n.sys)
	if err != nil {
		t.Fatalf("opening %s: %v", ref, err)
	}
	defer src.Close()
	return n.pc.IsRunningImageAllowed(context.Background(), image.UnparsedInstance(src, nil))
}

func TestSignAndVerify(t *testing.T) {
	r := newTestRegistry(t)
	ctx := context.Background()
	privA, pubA := keyPair(t, "secret")
	privB, _ := keyPair(t, "")

	signed := r.host + "/k8s-p10/pause:3.10.1"
	img, dgst := pushRandom(t, signed)
	unsigned := r.host + "/k8s-p10/etcd:3.6.6-0"
	pushRandom(t, unsigned)
	otherKey := r.host + "/library/busybox:1.37"
	pushRandom(t, otherKey)
	sameImageOtherTag := r.host + "/k8s-p10/pause:latest"
	push(t, sameImageOtherTag, img)

	r.reset()
	var out bytes.Buffer
	if err := r.client().sign(ctx, []string{signed}, privA, []byte("secret"), &out); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	t.Logf("Sign:\n%s", out.String())
	if !strings.Contains(out.String(), signed) || !strings.Contains(out.String(), " signed ") {
		t.Errorf("progress %q does not report %s as signed", out.String(), signed)
	}

	// The image is untouched: same digest, none of its blobs uploaded again, its tag not written.
	if got := headDigest(t, signed); got != dgst {
		t.Errorf("%s is %s after signing, was %s", signed, got, dgst)
	}
	blobs, manifests := r.written()
	layers, _ := img.Layers()
	cfg, _ := img.ConfigName()
	own := []string{cfg.String()}
	for _, l := range layers {
		d, _ := l.Digest()
		own = append(own, d.String())
	}
	for _, b := range blobs {
		if slices.Contains(own, b) {
			t.Errorf("signing uploaded the image's blob %s again", b)
		}
	}
	sigTag := "sha256-" + dgst.Hex + ".sig"
	for _, m := range manifests {
		if base := m[strings.LastIndex(m, "/")+1:]; base != dgst.String() && base != sigTag {
			t.Errorf("signing wrote the manifest %s: only %s (the image, by digest) and %s are expected", m, dgst, sigTag)
		}
	}
	tags, err := remote.List(ggcrRef(t, signed).Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tags, sigTag) {
		t.Errorf("tags %q: no sigstore attachment %s", tags, sigTag)
	}

	if err := r.client().sign(ctx, []string{otherKey}, privB, nil, io.Discard); err != nil {
		t.Fatalf("Sign with the other key: %v", err)
	}

	n := newNode(t, r.host, pubA)
	for _, tt := range []struct {
		ref  string
		want bool
		why  string
	}{
		{signed, true, "signed with the node's key"},
		{r.host + "/k8s-p10/pause@" + dgst.String(), true, "pulled by digest: a signature in the repository counts"},
		{unsigned, false, "not signed"},
		{otherKey, false, "signed with another key"},
		{sameImageOtherTag, false, "the same image under a tag that was not signed"},
		{strings.Replace(signed, "127.0.0.1:", "localhost:", 1), false, "the same image from another registry host"},
	} {
		ok, err := n.allowed(t, tt.ref)
		t.Logf("%s (%s): allowed %v, %v", tt.ref, tt.why, ok, err)
		if ok != tt.want {
			t.Errorf("%s (%s): allowed = %v (%v), want %v", tt.ref, tt.why, ok, err, tt.want)
		}
		if !ok && err == nil {
			t.Errorf("%s: refused without a reason", tt.ref)
		}
	}

	// Verify, as init and join check the registry: only the images the node would refuse.
	refused, err := r.client().verify(ctx, []string{signed, unsigned, otherKey}, pubA)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if len(refused) != 2 || !strings.HasPrefix(refused[0], unsigned+": ") || !strings.HasPrefix(refused[1], otherKey+": ") {
		t.Errorf("verify refused %q, want %s and %s with their reasons", refused, unsigned, otherKey)
	}

	// A signature by another key does not hide the image from this key: signing adds one, and
	// one accepted signature is enough.
	if err := r.client().sign(ctx, []string{otherKey}, privA, []byte("secret"), io.Discard); err != nil {
		t.Fatalf("Sign with the node's key after the other key: %v", err)
	}
	if ok, err := n.allowed(t, otherKey); !ok {
		t.Errorf("%s signed by both keys: refused (%v)", otherKey, err)
	}

	// Signing again leaves the signed image as it is.
	r.reset()
	out.Reset()
	if err := r.client().sign(ctx, []string{signed}, privA, []byte("secret"), &out); err != nil {
		t.Fatalf("Sign again: %v", err)
	}
	if !strings.Contains(out.String(), "already signed") {
		t.Errorf("second Sign: %q, want 'already signed'", out.String())
	}
	if blobs, manifests := r.written(); len(blobs)+len(manifests) > 0 {
		t.Errorf("second Sign wrote blobs %q, manifests %q; want nothing", blobs, manifests)
	}
}

func TestSignRefusesPlainHTTPElsewhere(t *testing.T) {
	r := newTestRegistry(t)
	ref := r.host + "/k8s-p10/pause:3.10.1"
	pushRandom(t, ref)
	priv, _ := keyPair(t, "")
	r.reset()
	err := Sign(context.Background(), []string{ref}, priv, nil, io.Discard)
	t.Logf("Sign over plain HTTP to %s: %v", r.host, err)
	if err == nil {
		t.Fatalf("Sign spoke plain HTTP to %s, which is not the local registry", r.host)
	}
	if blobs, manifests := r.written(); len(blobs)+len(manifests) > 0 {
		t.Errorf("refused Sign wrote blobs %q, manifests %q", blobs, manifests)
	}
}

func TestSignBadKey(t *testing.T) {
	r := newTestRegistry(t)
	ref := r.host + "/k8s-p10/pause:3.10.1"
	pushRandom(t, ref)
	priv, pub := keyPair(t, "right")
	for _, tt := range []struct {
		key, pass, want string
	}{
		{priv, "wrong", PassphraseEnv},
		{pub, "right", "not a sigstore private key"},
		{filepath.Join(t.TempDir(), "none.key"), "", "no such file"},
	} {
		err := r.client().sign(context.Background(), []string{ref}, tt.key, []byte(tt.pass), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Sign with %s, passphrase %q: %v, want an error with %q", filepath.Base(tt.key), tt.pass, err, tt.want)
		}
		if err2 := CheckKey(tt.key, []byte(tt.pass)); err2 == nil {
			t.Errorf("CheckKey(%s, %q) accepted it", filepath.Base(tt.key), tt.pass)
		}
	}
	if err := CheckKey(priv, []byte("right")); err != nil {
		t.Errorf("CheckKey with the right passphrase: %v", err)
	}
	for _, bad := range []string{"pause:3.10.1", r.host + "/k8s-p10/pause", r.host + "/k8s-p10/pause:3.10.1@sha256:" + strings.Repeat("0", 64)} {
		if err := r.client().sign(context.Background(), []string{bad}, priv, []byte("right"), io.Discard); err == nil {
			t.Errorf("Sign accepted the reference %q", bad)
		}
	}
}

func TestGenerateKeyPair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "signing")
	priv, pub, err := GenerateKeyPair(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if priv != filepath.Join(dir, PrivateKeyFile) || pub != filepath.Join(dir, PublicKeyFile) {
		t.Errorf("paths %s, %s", priv, pub)
	}
	for p, want := range map[string]os.FileMode{dir: os.ModeDir | 0o700, priv: 0o600, pub: 0o644} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}
	privData, _ := os.ReadFile(priv)
	pubData, _ := os.ReadFile(pub)
	if !bytes.Contains(privData, []byte("ENCRYPTED")) || !bytes.HasPrefix(pubData, []byte("-----BEGIN PUBLIC KEY-----")) {
		t.Errorf("key files:\n%s\n%s", privData, pubData)
	}
	// The .pub is the public half of the .key.
	if derived, err := publicKeyOf(priv, []byte{}); err != nil || !bytes.Equal(derived, pubData) {
		t.Errorf("public key of %s: %v\n%s\nwant\n%s", priv, err, derived, pubData)
	}

	// Neither file is replaced, nor a lone one completed.
	if _, _, err := GenerateKeyPair(dir, nil); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second GenerateKeyPair: %v, want 'already exists'", err)
	}
	if again, _ := os.ReadFile(priv); !bytes.Equal(again, privData) {
		t.Error("the private key was replaced")
	}
	if err := os.Remove(priv); err != nil {
		t.Fatal(err)
	}
	if _, _, err := GenerateKeyPair(dir, nil); err == nil || !strings.Contains(err.Error(), pub+" already exists") {
		t.Errorf("GenerateKeyPair beside a lone .pub: %v, want '%s already exists'", err, pub)
	}
	if _, err := os.Stat(priv); err == nil {
		t.Error("GenerateKeyPair wrote a private key beside an existing public key")
	}
}

func TestPolicy(t *testing.T) {
	data, err := Policy("registry.local", "/etc/u7s/signing/u7s-signing.pub")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("policy.json:\n%s", data)
	var got any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"default": []any{map[string]any{"type": "reject"}},
		"transports": map[string]any{
			"docker": map[string]any{
				"registry.local": []any{map[string]any{
					"type":           "sigstoreSigned",
					"keyPath":        "/etc/u7s/signing/u7s-signing.pub",
					"signedIdentity": map[string]any{"type": "matchRepoDigestOrExact"},
				}},
			},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("policy\n%s\nwant\n%v", data, want)
	}
	for _, bad := range [][2]string{
		{"registry.local", "u7s-signing.pub"},
		{"", "/k.pub"},
		{"registry.local/k8s-p10", "/k.pub"},
		{"http://registry.local", "/k.pub"},
		{"registry", "/k.pub"},
	} {
		if _, err := Policy(bad[0], bad[1]); err == nil {
			t.Errorf("Policy(%q, %q) accepted", bad[0], bad[1])
		}
	}
	if _, err := Policy("registry.local:5000", "/k.pub"); err != nil {
		t.Errorf("Policy with a port: %v", err)
	}
}

func TestRegistriesD(t *testing.T) {
	got, err := RegistriesD("registry.local")
	if err != nil {
		t.Fatal(err)
	}
	if want := "docker:\n  registry.local:\n    use-sigstore-attachments: true\n"; string(got) != want {
		t.Errorf("registries.d:\n%s\nwant\n%s", got, want)
	}
	if _, err := RegistriesD("registry.local/k8s-p10"); err == nil {
		t.Error("RegistriesD accepted a repository")
	}
}
