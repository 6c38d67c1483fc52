package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/imagebuild"
)

func init() { registerImagesSubcommand(newImagesLoadCommand) }

func newImagesLoadCommand() *cobra.Command {
	registry := "registry.local/k8s-p10"
	c := &cobra.Command{
		Use:   "load ARCHIVE",
		Short: "Push every image of an image archive (make images-archive) into the site's registry (air-gapped sites)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			n, err := imagebuild.Load(c.Context(), args[0], registry, c.OutOrStdout())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%d images pushed to %s; check them with: U7S_REGISTRY=%s u7s images check\n", n, registry, registry)
			return nil
		},
	}
	c.Flags().StringVar(&registry, "registry", registry, "the registry prefix of the node images (test images go to its host)")
	return c
}
