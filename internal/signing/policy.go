package signing

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/signature"
	"sigs.k8s.io/yaml"
)

// Policy is the containers-policy.json(5) of a node that runs only signed images: every image
// is refused, except those of the docker transport (registries) from registryHost (the whole
// registry, e.g. "registry.local" or "registry.local:5000"), which need a sigstore signature by
// the public key at pubKeyPath (read by cri-o at each pull, so it must stay there) whose identity
// is the reference pulled (matchRepoDigestOrExact: the exact tag, or any tag of the repository
// for a pull by digest).
func Policy(registryHost, pubKeyPath string) ([]byte, error) {
	if !filepath.IsAbs(pubKeyPath) {
		return nil, fmt.Errorf("the public key path %q in the signature policy must be absolute", pubKeyPath)
	}
	p, err := policy(registryHost, signature.PRSigstoreSignedWithKeyPath(pubKeyPath))
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	// What cri-o will read must parse as a policy.
	if _, err := signature.NewPolicyFromBytes(data); err != nil {
		return nil, fmt.Errorf("the signature policy does not parse back: %w", err)
	}
	return append(data, '\n'), nil
}

// policy is Policy with the key given by key (a path on nodes, the key itself when Sign checks
// its own signatures).
func policy(registryHost string, key signature.PRSigstoreSignedOption) (*signature.Policy, error) {
	if err := checkHost(registryHost); err != nil {
		return nil, err
	}
	signed, err := signature.NewPRSigstoreSigned(key,
		signature.PRSigstoreSignedWithSignedIdentity(signature.NewPRMMatchRepoDigestOrExact()))
	if err != nil {
		return nil, err
	}
	return &signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRReject()},
		Transports: map[string]signature.PolicyTransportScopes{
			"docker": {registryHost: signature.PolicyRequirements{signed}},
		},
	}, nil
}

// registriesD is one containers-registries.d(5) file.
type registriesD struct {
	Docker map[string]registriesDNamespace `json:"docker"`
}

type registriesDNamespace struct {
	UseSigstoreAttachments bool `json:"use-sigstore-attachments"`
}

// RegistriesD is the containers-registries.d(5) file that makes containers/image read (and,
// when signing, write) sigstore signatures as attachments in each of hosts, the tags
// sha256-<digest>.sig beside the images. Without it the signatures are not looked for and the
// policy of Policy refuses every image. The hosts are where images are pulled from: the
// registry's name and every location registries.conf sends it to (registry.local:80).
func RegistriesD(hosts ...string) ([]byte, error) { return registriesDFile(hosts...) }

func registriesDFile(hosts ...string) ([]byte, error) {
	c := registriesD{Docker: map[string]registriesDNamespace{}}
	for _, h := range hosts {
		if err := checkHost(h); err != nil {
			return nil, err
		}
		c.Docker[h] = registriesDNamespace{UseSigstoreAttachments: true}
	}
	return yaml.Marshal(c)
}

// checkHost accepts a registry host, host[:port], as the scopes of both files name it.
func checkHost(host string) error {
	if host == "" || strings.ContainsAny(host, "/@ ") {
		return fmt.Errorf("registry host %q: want a host or host:port, like registry.local, with no scheme or repository", host)
	}
	if r, err := reference.ParseNamed(host + "/x"); err != nil || reference.Domain(r) != host {
		return fmt.Errorf("registry host %q: want a registry host name, with a dot or a port, like registry.local or localhost:5000", host)
	}
	return nil
}
