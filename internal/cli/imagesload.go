package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/imagebuild"
	"github.com/u7s/u7s/internal/registry"
	"github.com/u7s/u7s/internal/signing"
)

func newImagesLoadCommand() *cobra.Command {
	reg := registry.LocalDefault
	var sign signFlags
	c := &cobra.Command{
		Use:   "load ARCHIVE [--registry REG] [--sign-key FILE]",
		Short: "Push every image of an image archive (make images-archive) into the site's registry (air-gapped sites)",
		Long: "Pushes every image of the archive to the registry; with --sign-key each one is then signed\n" +
			"(see u7s images sign).",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := sign.check(); err != nil {
				return err
			}
			ctx, cancel := imagesSignalContext(c.Context())
			defer cancel()
			pushed, err := imagebuild.Load(ctx, args[0], reg, c.OutOrStdout())
			if err != nil {
				return err
			}
			if err := sign.sign(ctx, pushed, c.OutOrStdout()); err != nil {
				return err
			}
			signed := ""
			if sign.key != "" {
				signed = " and signed"
			}
			fmt.Fprintf(c.OutOrStdout(), "%d images pushed to %s%s; check them with: U7S_REGISTRY=%s u7s images check\n", len(pushed), reg, signed, reg)
			return nil
		},
	}
	c.Flags().StringVar(&reg, "registry", reg, "the registry prefix of the node images (test images go to its host)")
	sign.bind(c, "after the push, sign every image pushed with this sigstore private key (u7s images keygen; passphrase from $"+signing.PassphraseEnv+")")
	return c
}
