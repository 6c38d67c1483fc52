package signing

import (
	"context"
	"fmt"
	"os"

	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/signature"

	"github.com/u7s/u7s/internal/registry"
)

// Verify checks, as a node with pubKeyFile in its policy would at pull, that each image of
// refs is signed with that key for that reference: init and join call it before they change
// the host. It returns each refused image with the policy's reason.
func Verify(ctx context.Context, refs []string, pubKeyFile string) ([]string, error) {
	return signingClient{plainHTTP: registry.Insecure}.verify(ctx, refs, pubKeyFile)
}

func (c signingClient) verify(ctx context.Context, refs []string, pubKeyFile string) ([]string, error) {
	pub, err := os.ReadFile(pubKeyFile)
	if err != nil {
		return nil, err
	}
	var hosts []string
	named := make([]reference.Named, len(refs))
	for i, ref := range refs {
		if named[i], err = parseRef(ref); err != nil {
			return nil, err
		}
		hosts = append(hosts, reference.Domain(named[i]))
	}
	dir, err := scratchConfig(hosts)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var refused []string
	for i, n := range named {
		h := reference.Domain(n)
		p, err := policy(h, signature.PRSigstoreSignedWithKeyData(pub))
		if err != nil {
			return nil, err
		}
		pc, err := signature.NewPolicyContext(p)
		if err != nil {
			return nil, err
		}
		j := job{ref: refs[i], named: n, sys: c.systemContext(h, dir), verify: pc}
		ir, err := docker.NewReference(n)
		if err == nil {
			var rejected error
			if _, rejected, err = j.check(ctx, ir); err == nil && rejected != nil {
				refused = append(refused, fmt.Sprintf("%s: %v", refs[i], rejected))
			}
		}
		pc.Destroy()
		if err != nil {
			return nil, err
		}
	}
	return refused, nil
}
