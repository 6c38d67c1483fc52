package cli

import (
	"errors"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/images"
	"github.com/u7s/u7s/internal/imagebuild"
	"github.com/u7s/u7s/internal/registry"
	"github.com/u7s/u7s/internal/signing"
)

// newImagesBuildCommand is `u7s images build`: the air-gapped path, images assembled from the
// binaries of `make components` without a container engine.
func newImagesBuildCommand() *cobra.Command {
	o := imagebuild.Options{}
	var sign signFlags
	cmd := &cobra.Command{
		Use:   "build --bin-dir DIR --registry REG [--push [--sign-key FILE] | --oci-dir DIR] [--only NAME,...] [--test-images]",
		Short: "Assemble the node's images from locally built binaries and push them or write an OCI layout",
		Long: "Assembles the images a u7s node runs (" + strings.Join(images.Names(), ", ") + ") from the binaries\n" +
			"in --bin-dir and the host's iptables-nft and tools (test images: agnhost's), one layer each, without\na container engine.\n" +
			"Node images are named REG/<name>:<tag>; the test images (upstream's e2e-test-images: busybox, agnhost, nginx, ...) go to\n" +
			"<registry host>/e2e-test-images/<name>, where upstream's e2e tests look for them.\n" +
			"registry.local is pushed to over plain HTTP (scripts/local-registry.sh runs one).\n" +
			"With --sign-key every image pushed is then signed (see u7s images sign).",
		Example: "  u7s images build --bin-dir _output/bin --registry registry.local/k8s-p10 --push --test-images\n" +
			"  u7s images build --bin-dir _output/bin --registry registry.local/k8s-p10 --push --sign-key u7s-signing.key\n" +
			"  u7s images build --bin-dir _output/bin --registry registry.local/k8s-p10 --oci-dir /srv/u7s-images",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Registry == "" {
				o.Registry = os.Getenv(registry.EnvVar)
			}
			if sign.key != "" && !o.Push {
				return errors.New("--sign-key signs the images pushed: give --push too")
			}
			if err := sign.check(); err != nil {
				return err
			}
			// Ctrl-C ends the build cleanly: the layers' temporary files are removed.
			ctx, cancel := imagesSignalContext(cmd.Context())
			defer cancel()
			pushed, err := imagebuild.Run(ctx, o, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			return sign.sign(ctx, pushed, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.BinDir, "bin-dir", "_output/bin", "directory holding the binaries built by 'make components'")
	f.StringVar(&o.Registry, "registry", "", "registry prefix of the node images, e.g. registry.local/k8s-p10 (default $U7S_REGISTRY)")
	f.BoolVar(&o.Push, "push", false, "push the images to the registry")
	f.StringVar(&o.OCIDir, "oci-dir", "", "write the images to this OCI layout directory, for offline transfer")
	f.StringSliceVar(&o.Only, "only", nil, "build only these images (default: every node image)")
	f.BoolVar(&o.TestImages, "test-images", false, "also build the test images upstream's Conformance specs pull (busybox, agnhost, nginx, ...)")
	sign.bind(cmd, "after the push, sign every image pushed with this sigstore private key (u7s images keygen; passphrase from $"+signing.PassphraseEnv+")")
	return cmd
}
