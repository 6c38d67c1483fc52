// Package signing signs the node images with sigstore signatures, as ALT's podsec does, and
// writes the containers-policy.json(5) and containers-registries.d(5) files with which a node's
// cri-o accepts only images signed by that key.
//
// The signatures are sigstore attachments in the registry (the tag sha256-<digest>.sig beside
// the image, as cosign stores them), written and read by containers/image. The private key stays
// where the images are built and pushed: a node needs only the public key.
//
// Build with -tags containers_image_openpgp (U7S_TAGS in the Makefile): without it
// containers/image's signature package links gpgme through cgo.
package signing

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containers/image/v5/signature/sigstore"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"

	"github.com/u7s/u7s/internal/fsutil"
)

const (
	// PrivateKeyFile and PublicKeyFile are the names GenerateKeyPair gives the key pair.
	PrivateKeyFile = "u7s-signing.key"
	PublicKeyFile  = "u7s-signing.pub"

	// PassphraseEnv holds the passphrase of the private key, for keygen and for signing. Empty
	// (or unset) is allowed: the key file is then encrypted with the empty passphrase, so anyone
	// who can read it can sign.
	PassphraseEnv = "U7S_SIGNING_PASSPHRASE"
)

// Passphrase is the private key's passphrase from PassphraseEnv; never nil, empty when unset.
func Passphrase() []byte { return []byte(os.Getenv(PassphraseEnv)) }

// GenerateKeyPair writes a new sigstore key pair (ECDSA P-256, the private key encrypted with
// passphrase in cosign's format) to dir/u7s-signing.key (mode 0600) and dir/u7s-signing.pub
// (0644), creating dir (0700) if needed. It refuses to replace either file: a new key pair
// would make every node that trusts the old public key refuse the images signed with the new one.
func GenerateKeyPair(dir string, passphrase []byte) (privPath, pubPath string, err error) {
	if passphrase == nil {
		passphrase = []byte{}
	}
	privPath, pubPath = filepath.Join(dir, PrivateKeyFile), filepath.Join(dir, PublicKeyFile)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s already exists: not replacing a signing key (nodes trust its public key); "+
				"use it, or remove both %s and %s first to start over with a new key pair", p, PrivateKeyFile, PublicKeyFile)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", "", err
		}
	}
	keys, err := sigstore.GenerateKeyPair(passphrase)
	if err != nil {
		return "", "", fmt.Errorf("generating a signing key pair: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	if err := fsutil.WriteFileAtomic(privPath, keys.PrivateKey, 0o600); err != nil {
		return "", "", err
	}
	if err := fsutil.WriteFileAtomic(pubPath, keys.PublicKey, 0o644); err != nil {
		os.Remove(privPath) // no half key pair that the next attempt would refuse to replace
		return "", "", err
	}
	return privPath, pubPath, nil
}

// CheckKey reads the private key file and decrypts it with passphrase, so that a wrong key or
// passphrase shows before a long build rather than after it.
func CheckKey(keyFile string, passphrase []byte) error {
	_, err := publicKeyOf(keyFile, passphrase)
	return err
}

// publicKeyOf decrypts the private key in keyFile (cosign's format, as sigstore.GenerateKeyPair
// writes it) and returns its public key in PEM, as the .pub file holds it.
func publicKeyOf(keyFile string, passphrase []byte) ([]byte, error) {
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("reading the signing key: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || (b.Type != "ENCRYPTED COSIGN PRIVATE KEY" && b.Type != "ENCRYPTED SIGSTORE PRIVATE KEY") {
		return nil, fmt.Errorf("%s is not a sigstore private key (make one with `u7s images keygen`)", keyFile)
	}
	der, err := encrypted.Decrypt(b.Bytes, passphrase)
	if err != nil {
		return nil, fmt.Errorf("decrypting the signing key %s: %w (wrong passphrase? it comes from %s)", keyFile, err, PassphraseEnv)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("the signing key %s: %w", keyFile, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the signing key %s: unsupported key type %T", keyFile, k)
	}
	pub, err := x509.MarshalPKIXPublicKey(s.Public())
	if err != nil {
		return nil, fmt.Errorf("the signing key %s: %w", keyFile, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), nil
}
