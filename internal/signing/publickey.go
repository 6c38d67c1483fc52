package signing

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// CheckPublicKey reads a public key file as init and join take it: one PEM "PUBLIC KEY"
// (what GenerateKeyPair writes as u7s-signing.pub). A private key is refused: it must never
// be on a node.
func CheckPublicKey(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(b)
	switch {
	case blk == nil:
		return fmt.Errorf("%s is not a PEM public key (want the .pub of u7s images keygen)", path)
	case blk.Type != "PUBLIC KEY":
		return fmt.Errorf("%s holds a %q, not the public key: give the .pub of u7s images keygen; the private key stays off the nodes", path, blk.Type)
	}
	if _, err := x509.ParsePKIXPublicKey(blk.Bytes); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
