package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	dockerconfig "github.com/containers/image/v5/pkg/docker/config"
	imagetypes "github.com/containers/image/v5/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// authFilesHint names where credentials are looked up, for error messages.
const authFilesHint = "REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json or /run/containers/<uid>/auth.json, " +
	"~/.config/containers/auth.json, ~/.docker/config.json"

// Check asks the registries of refs (distribution v2 API) whether each image exists, and returns
// the missing ones in the order given. It fails when a registry cannot be reached at all, refuses
// the credentials, or answers something other than "present" or "not found"; missing is then
// still filled for the references that were answered. init and join call it before they change
// anything on the host.
func Check(ctx context.Context, refs []string) (missing []string, err error) {
	return defaultClient().check(ctx, refs)
}

// client talks to registries; tests replace base (to trust a test CA or to map registry.local).
type client struct {
	base     http.RoundTripper
	keychain authn.Keychain
}

func defaultClient() *client {
	return &client{base: remote.DefaultTransport, keychain: containersKeychain{}}
}

// transport refuses plain HTTP except to the local registry: go-containerregistry would otherwise
// fall back to HTTP for any *.local name and any RFC 1918 address.
func (c *client) transport() http.RoundTripper { return plainHTTPGuard{c.base} }

type plainHTTPGuard struct{ next http.RoundTripper }

func (g plainHTTPGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !Insecure(req.URL.Host) {
		return nil, fmt.Errorf("refusing plain HTTP to %s: only %s is a plain-HTTP registry, every other one must answer HTTPS", req.URL.Host, LocalRegistryHost)
	}
	return g.next.RoundTrip(req)
}

// parseRef parses an image reference, marking the local registry as plain HTTP.
func parseRef(ref string) (name.Reference, error) {
	opts := []name.Option{name.StrictValidation}
	if Insecure(ref) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return r, nil
}

func (c *client) check(ctx context.Context, refs []string) ([]string, error) {
	parsed := make([]name.Reference, len(refs))
	var registries []name.Registry
	seen := map[string]bool{}
	for i, ref := range refs {
		r, err := parseRef(ref)
		if err != nil {
			return nil, err
		}
		parsed[i] = r
		if reg := r.Context().Registry; !seen[reg.Name()] {
			seen[reg.Name()] = true
			registries = append(registries, reg)
		}
	}
	tr := c.transport()

	// Ping each registry first: a host that is not a registry would otherwise make every image
	// look "not found".
	var errs []error
	for _, reg := range registries {
		if _, err := transport.Ping(ctx, reg, tr); err != nil {
			errs = append(errs, fmt.Errorf("cannot reach the image registry %s: %w; check that /etc/hosts (or DNS) names it and that it "+
				"serves the distribution v2 API at %s://%s/v2/, or choose another registry with %s (see `u7s registry --explain`)",
				reg.Name(), err, schemeOf(reg.Name()), reg.Name(), EnvVar))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	found := make([]bool, len(refs))
	checkErrs := make([]error, len(refs))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, r := range parsed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			found[i], checkErrs[i] = c.exists(ctx, r, tr)
		}()
	}
	wg.Wait()
	var missing []string
	for i, ref := range refs {
		if checkErrs[i] == nil && !found[i] {
			missing = append(missing, ref)
		}
	}
	return missing, errors.Join(checkErrs...)
}

func schemeOf(host string) string {
	if Insecure(host) {
		return "http"
	}
	return "https"
}

// exists asks for ref's manifest; "not found" is (false, nil).
func (c *client) exists(ctx context.Context, ref name.Reference, tr http.RoundTripper) (bool, error) {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuthFromKeychain(c.keychain)}
	_, err := remote.Head(ref, opts...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusMethodNotAllowed {
		_, err = remote.Get(ref, opts...) // a registry without HEAD on manifests
	}
	if err == nil {
		return true, nil
	}
	if errors.As(err, &terr) {
		switch {
		case terr.StatusCode == http.StatusNotFound:
			return false, nil
		case hasCode(terr, transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode):
			return false, nil
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			return false, fmt.Errorf("registry %s refused access to %s (%d %s): log in (e.g. `podman login %s`) or check the credentials in %s",
				ref.Context().RegistryStr(), ref, terr.StatusCode, http.StatusText(terr.StatusCode), ref.Context().RegistryStr(), authFilesHint)
		}
	}
	return false, fmt.Errorf("checking %s: %w", ref, err)
}

func hasCode(terr *transport.Error, codes ...transport.ErrorCode) bool {
	for _, d := range terr.Errors {
		for _, c := range codes {
			if d.Code == c {
				return true
			}
		}
	}
	return false
}

// containersKeychain reads credentials the way podman, skopeo and cri-o do (containers-auth.json(5)):
// REGISTRY_AUTH_FILE if set, else $XDG_RUNTIME_DIR/containers/auth.json (or
// /run/containers/<uid>/auth.json), ~/.config/containers/auth.json, ~/.docker/config.json.
type containersKeychain struct{}

func (containersKeychain) Resolve(res authn.Resource) (authn.Authenticator, error) {
	creds, err := credentials(res.String(), res.RegistryStr())
	if err != nil {
		return nil, err
	}
	if creds == (imagetypes.DockerAuthConfig{}) {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: creds.Username, Password: creds.Password, IdentityToken: creds.IdentityToken}), nil
}

// credentials looks up key (a repository or registry) in the containers auth files.
func credentials(key, registry string) (imagetypes.DockerAuthConfig, error) {
	// go-containerregistry says index.docker.io; the auth files say docker.io.
	if registry == name.DefaultRegistry {
		key = "docker.io" + strings.TrimPrefix(key, registry)
	}
	sys := &imagetypes.SystemContext{AuthFilePath: os.Getenv("REGISTRY_AUTH_FILE")}
	creds, err := dockerconfig.GetCredentials(sys, key)
	if err != nil {
		return imagetypes.DockerAuthConfig{}, fmt.Errorf("reading registry credentials for %s (%s): %w", key, authFilesHint, err)
	}
	return creds, nil
}

// ParseRef parses an image reference with the one transport rule of u7s: plain HTTP for the
// local registry only.
func ParseRef(ref string) (name.Reference, error) { return parseRef(ref) }

// RemoteOptions are go-containerregistry's options for talking to registries the way init and
// join check them: the plain-HTTP guard and the containers credentials (auth.json). Pushes use
// them too, so that `images build --push` and `images check` never disagree.
func RemoteOptions(ctx context.Context) []remote.Option {
	c := defaultClient()
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(c.transport()), remote.WithAuthFromKeychain(c.keychain)}
}
