package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/signing"
)

func newImagesKeygenCommand() *cobra.Command {
	dir := "."
	cmd := &cobra.Command{
		Use:   "keygen [--dir DIR]",
		Short: "Make the key pair that signs the node images (sigstore, as podsec's)",
		Long: "Writes DIR/" + signing.PrivateKeyFile + " (mode 0600, encrypted with $" + signing.PassphraseEnv + ", which may be\n" +
			"empty) and DIR/" + signing.PublicKeyFile + ". Existing keys are never replaced.\n\n" +
			"The private key signs: keep it where the images are built and pushed, never on a node\n" +
			"(u7s images build --push --sign-key, u7s images load --sign-key, u7s images sign).\n" +
			"The public key goes to every node: u7s init/join --image-signing-key, and the node's cri-o then\n" +
			"runs only images of its registry signed with this key.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pass := signing.Passphrase()
			priv, pub, err := signing.GenerateKeyPair(dir, pass)
			if err != nil {
				return err
			}
			if abs, err := filepath.Abs(priv); err == nil {
				priv = abs
			}
			if abs, err := filepath.Abs(pub); err == nil {
				pub = abs
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "private key: %s\n  signs the images: u7s images build --push --sign-key %s; keep it off the nodes\n", priv, priv)
			fmt.Fprintf(out, "public key:  %s\n  goes to every node: u7s init (or join) --image-signing-key %s\n", pub, pub)
			if len(pass) == 0 {
				fmt.Fprintf(out, "note: %s is empty, so the private key has no passphrase: whoever can read the file can sign\n", signing.PassphraseEnv)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", dir, "directory for "+signing.PrivateKeyFile+" and "+signing.PublicKeyFile)
	return cmd
}

func newImagesSignCommand() *cobra.Command {
	var f signFlags
	cmd := &cobra.Command{
		Use:   "sign --sign-key FILE REF...",
		Short: "Sign images already in their registry (sigstore attachments)",
		Long: "Adds a sigstore signature by the private key to each image, as a sigstore attachment in its\n" +
			"registry (the tag sha256-<digest>.sig); the image itself, its tags and its digest stay as they are.\n" +
			"An image already signed by this key for that reference is left alone. The passphrase comes\n" +
			"from $" + signing.PassphraseEnv + ".",
		Example: "  u7s images sign --sign-key u7s-signing.key registry.local/k8s-p10/pause:3.10.1",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.key == "" {
				return errors.New("no --sign-key: give the private key of u7s images keygen")
			}
			ctx, cancel := imagesSignalContext(cmd.Context())
			defer cancel()
			return f.sign(ctx, args, cmd.OutOrStdout())
		},
	}
	f.bind(cmd, "the sigstore private key to sign with (from u7s images keygen)")
	return cmd
}

// signFlags is --sign-key of the commands that push images.
type signFlags struct{ key string }

func (f *signFlags) bind(cmd *cobra.Command, usage string) {
	cmd.Flags().StringVar(&f.key, "sign-key", "", usage)
}

// check fails early on a key that cannot sign, before minutes of building or pushing.
func (f *signFlags) check() error {
	if f.key == "" {
		return nil
	}
	return signing.CheckKey(f.key, signing.Passphrase())
}

func (f *signFlags) sign(ctx context.Context, refs []string, out io.Writer) error {
	if f.key == "" || len(refs) == 0 {
		return nil
	}
	fmt.Fprintf(out, "signing %d images with %s\n", len(refs), f.key)
	return signing.Sign(ctx, refs, f.key, signing.Passphrase(), out)
}
