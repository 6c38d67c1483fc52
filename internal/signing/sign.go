package signing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/containers/image/v5/copy"
	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/image"
	"github.com/containers/image/v5/manifest"
	"github.com/containers/image/v5/signature"
	"github.com/containers/image/v5/signature/signer"
	"github.com/containers/image/v5/signature/sigstore"
	"github.com/containers/image/v5/types"
	"github.com/opencontainers/go-digest"

	"github.com/u7s/u7s/internal/registry"
	"github.com/u7s/u7s/internal/version"
)

// Sign adds a sigstore signature made with the private key in keyFile (decrypted with
// passphrase; nil is the empty passphrase) to each image of refs, already in its registry,
// printing one line per image to progress. Each image is copied onto itself by digest with the
// signature added, so no layer is uploaded again, no tag is written and the manifest digest
// stays; the signature is a sigstore attachment (tag sha256-<digest>.sig) whose identity is the
// reference as given, so that a node's Policy accepts that reference. An image that already
// carries a valid signature of this key for that reference is left as it is. After signing,
// the signature is read back from the registry and verified.
//
// Registries are reached over HTTPS, and over plain HTTP only the local registry
// (registry.Insecure); credentials come from the containers auth files (REGISTRY_AUTH_FILE,
// auth.json). The host's registries.conf, registries.d and policy.json are not read.
func Sign(ctx context.Context, refs []string, keyFile string, passphrase []byte, progress io.Writer) error {
	return signingClient{plainHTTP: registry.Insecure}.sign(ctx, refs, keyFile, passphrase, progress)
}

// signingClient holds the transport rule, so that tests can sign in a registry on 127.0.0.1.
type signingClient struct {
	// plainHTTP tells whether a registry host may be spoken to over plain HTTP.
	plainHTTP func(host string) bool
}

func (c signingClient) sign(ctx context.Context, refs []string, keyFile string, passphrase []byte, progress io.Writer) error {
	if passphrase == nil {
		passphrase = []byte{} // sigstore.WithPrivateKeyFile takes nil for "no passphrase given"
	}
	named := make([]reference.Named, len(refs))
	var hosts []string
	seen := map[string]bool{}
	for i, ref := range refs {
		n, err := parseRef(ref)
		if err != nil {
			return err
		}
		named[i] = n
		if h := reference.Domain(n); !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	if len(refs) == 0 {
		return nil
	}

	pub, err := publicKeyOf(keyFile, passphrase)
	if err != nil {
		return err
	}
	s, err := sigstore.NewSigner(sigstore.WithPrivateKeyFile(keyFile, passphrase))
	if err != nil {
		return fmt.Errorf("loading the signing key %s: %w", keyFile, err)
	}
	defer s.Close()

	dir, err := scratchConfig(hosts)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	acceptAll, err := signature.NewPolicyContext(&signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return err
	}
	defer acceptAll.Destroy()
	verifiers := map[string]*signature.PolicyContext{}
	defer func() {
		for _, pc := range verifiers {
			pc.Destroy()
		}
	}()
	for _, h := range hosts {
		p, err := policy(h, signature.PRSigstoreSignedWithKeyData(pub))
		if err != nil {
			return err
		}
		if verifiers[h], err = signature.NewPolicyContext(p); err != nil {
			return err
		}
	}

	for i, n := range named {
		if err := ctx.Err(); err != nil {
			return err
		}
		h := reference.Domain(n)
		j := job{
			ref:       refs[i],
			named:     n,
			sys:       c.systemContext(h, dir),
			signer:    s,
			acceptAll: acceptAll,
			verify:    verifiers[h],
		}
		if err := j.run(ctx, progress); err != nil {
			return err
		}
	}
	return nil
}

// parseRef accepts a fully qualified reference with a tag or a digest (not both).
func parseRef(ref string) (reference.Named, error) {
	n, err := reference.ParseNamed(ref)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w (want registry/repository:tag)", ref, err)
	}
	_, tagged := n.(reference.Tagged)
	_, digested := n.(reference.Digested)
	switch {
	case !tagged && !digested:
		return nil, fmt.Errorf("image reference %q has no tag or digest", ref)
	case tagged && digested:
		return nil, fmt.Errorf("image reference %q has both a tag and a digest: give one", ref)
	}
	return n, nil
}

// scratchConfig makes a throwaway containers/image configuration for the registries hosts:
// our own registries.d (sigstore attachments in each), an empty registries.conf (no mirrors,
// no insecure registries of the host) and a blob cache.
func scratchConfig(hosts []string) (string, error) {
	dir, err := os.MkdirTemp("", "u7s-sign-")
	if err != nil {
		return "", err
	}
	regD, err := registriesDFile(hosts...)
	if err == nil {
		err = os.Mkdir(filepath.Join(dir, "registries.d"), 0o700)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "registries.d", "u7s.yaml"), regD, 0o600)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "registries.conf"), nil, 0o600)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// systemContext is containers/image's configuration for talking to host.
func (c signingClient) systemContext(host, dir string) *types.SystemContext {
	sys := &types.SystemContext{
		RegistriesDirPath:           filepath.Join(dir, "registries.d"),
		SystemRegistriesConfPath:    filepath.Join(dir, "registries.conf"),
		SystemRegistriesConfDirPath: filepath.Join(dir, "registries.conf.d"),
		BlobInfoCacheDir:            dir,
		AuthFilePath:                os.Getenv("REGISTRY_AUTH_FILE"),
		DockerRegistryUserAgent:     "u7s/" + version.U7s,
		// HTTPS with a verified certificate…
		DockerInsecureSkipTLSVerify: types.OptionalBoolFalse,
	}
	if c.plainHTTP(host) {
		// …except for the local registry, as cri-o's registries.conf has it (insecure = true):
		// HTTPS without verification, then plain HTTP.
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	return sys
}

// job signs one image.
type job struct {
	ref       string
	named     reference.Named
	sys       *types.SystemContext
	signer    *signer.Signer
	acceptAll *signature.PolicyContext
	verify    *signature.PolicyContext
}

func (j job) run(ctx context.Context, out io.Writer) error {
	start := time.Now()
	tagRef, err := docker.NewReference(j.named)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", j.ref, err)
	}
	dgst, rejected, err := j.check(ctx, tagRef)
	if err != nil {
		return err
	}
	if rejected == nil {
		fmt.Fprintf(out, "%-70s %s already signed\n", j.ref, short(dgst))
		return nil
	}

	// Copy the image onto itself by digest: the tag is never written, and the copy fails rather
	// than write another manifest.
	byDigest, ok := j.named.(reference.Canonical)
	if !ok {
		if byDigest, err = reference.WithDigest(reference.TrimNamed(j.named), dgst); err != nil {
			return err
		}
	}
	digestRef, err := docker.NewReference(byDigest)
	if err != nil {
		return err
	}
	opts := &copy.Options{
		Signers:            []*signer.Signer{j.signer},
		SourceCtx:          j.sys,
		DestinationCtx:     j.sys,
		PreserveDigests:    true,
		ImageListSelection: copy.CopyAllImages, // a list is copied (and signed) as a list
		ReportWriter:       io.Discard,
	}
	if _, tagged := j.named.(reference.Tagged); tagged {
		opts.SignIdentity = j.named // the reference nodes pull, not the digest copied to
	}
	m, err := copy.Image(ctx, j.acceptAll, digestRef, digestRef, opts)
	if err != nil {
		return fmt.Errorf("signing %s: %w", j.ref, err)
	}
	if got, err := manifest.Digest(m); err != nil || got != dgst {
		return fmt.Errorf("signing %s: the copy wrote manifest %s, not %s (%v)", j.ref, got, dgst, err)
	}

	// Read the signature back as a node would.
	after, rejected, err := j.check(ctx, tagRef)
	if err != nil {
		return fmt.Errorf("%s signed, but reading it back: %w", j.ref, err)
	}
	if after != dgst {
		return fmt.Errorf("%s was signed as %s, but now names %s: was it pushed again meanwhile?", j.ref, dgst, after)
	}
	if rejected != nil {
		return fmt.Errorf("%s signed, but the signature does not verify: %w", j.ref, rejected)
	}
	fmt.Fprintf(out, "%-70s %s signed %6.1fs\n", j.ref, short(dgst), time.Since(start).Seconds())
	return nil
}

// check reads ref's manifest digest and whether a node's policy with this key accepts it:
// rejected is the policy's reason when not.
func (j job) check(ctx context.Context, ref types.ImageReference) (dgst digest.Digest, rejected, err error) {
	src, err := ref.NewImageSource(ctx, j.sys)
	if err != nil {
		return "", nil, fmt.Errorf("reading %s: %w", j.ref, err)
	}
	defer src.Close()
	u := image.UnparsedInstance(src, nil)
	m, _, err := u.Manifest(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("reading the manifest of %s: %w", j.ref, err)
	}
	if dgst, err = manifest.Digest(m); err != nil {
		return "", nil, err
	}
	// Read the signatures first (u keeps them), so that what the policy says next is about them,
	// not about the registry.
	if _, err := u.Signatures(ctx); err != nil {
		return "", nil, fmt.Errorf("reading the signatures of %s: %w", j.ref, err)
	}
	ok, err := j.verify.IsRunningImageAllowed(ctx, u)
	if ok {
		return dgst, nil, nil
	}
	if err == nil {
		err = errors.New("refused by the signature policy")
	}
	return dgst, err, nil
}

func short(d digest.Digest) string {
	if s := d.String(); len(s) > len("sha256:")+12 {
		return s[:len("sha256:")+12]
	}
	return d.String()
}
