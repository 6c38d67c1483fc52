package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/images"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/registry"
	"github.com/u7s/u7s/internal/version"
)

// newImagesCommand is `u7s images`: the images of this node, from the registry `u7s registry` names.
func newImagesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "List, check and pull the images this node runs",
		Long: "The images init and join pull for Kubernetes " + version.Pinned.Kubernetes + ", from the registry that\n" +
			"`u7s registry` prints (" + registry.EnvVar + ").",
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newImagesListCommand(), newImagesCheckCommand(), newImagesPullCommand(), newImagesRepoListCommand(),
		newImagesBuildCommand(), newImagesLoadCommand(), newImagesKeygenCommand(), newImagesSignCommand())
	return cmd
}

// imagesSelection chooses the registry and which images.
type imagesSelection struct {
	src        registrySourceFlags
	testImages bool
}

func (s *imagesSelection) bind(cmd *cobra.Command) {
	s.src.bind(cmd)
	cmd.Flags().BoolVar(&s.testImages, "test-images", false, "also the test images of upstream's Conformance specs (busybox, agnhost, nginx, ...)")
}

func (s *imagesSelection) images() (registry.Resolution, []registry.Image, error) {
	r, err := s.src.resolve()
	if err != nil {
		return r, nil, err
	}
	imgs := r.Images()
	if s.testImages {
		imgs = append(imgs, r.TestImages()...)
	}
	return r, imgs, nil
}

func newImagesListCommand() *cobra.Command {
	var sel imagesSelection
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Print every image init and join pull, one reference a line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, imgs, err := sel.images()
			if err != nil {
				return err
			}
			for _, img := range imgs {
				fmt.Fprintln(cmd.OutOrStdout(), img.Ref)
			}
			return nil
		},
	}
	sel.bind(cmd)
	return cmd
}

func newImagesRepoListCommand() *cobra.Command {
	var src registrySourceFlags
	cmd := &cobra.Command{
		Use:   "repo-list",
		Short: "Print the KUBE_TEST_REPO_LIST of upstream's e2e suite for this registry",
		Long: "Upstream's e2e suite (make conformance) finds its test images through the file KUBE_TEST_REPO_LIST\n" +
			"names; this prints it for the registry, where u7s images build --test-images puts them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := src.resolve()
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), r.E2ERepoList())
			return nil
		},
	}
	src.bind(cmd)
	return cmd
}

func newImagesCheckCommand() *cobra.Command {
	var sel imagesSelection
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Ask the registry whether every image exists; list the missing ones",
		Long: "Asks the registry (distribution v2 API) for each image's manifest, with credentials from the\n" +
			"containers auth files, and prints the missing references. Exits non-zero when any is missing or\n" +
			"the registry cannot be reached. init and join run the same check before changing the host.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, imgs, err := sel.images()
			if err != nil {
				return err
			}
			ctx, cancel := imagesSignalContext(cmd.Context())
			defer cancel()
			ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
			defer cancelTimeout()
			refs := registry.Refs(imgs)
			missing, err := registry.Check(ctx, refs)
			out := cmd.OutOrStdout()
			for _, m := range missing {
				fmt.Fprintln(out, "missing: "+m)
			}
			if err != nil {
				return err
			}
			if len(missing) > 0 {
				return fmt.Errorf("%d of %d images are missing from %s: push them there (e.g. u7s images build --push) "+
					"or choose another registry with %s (u7s registry --explain shows why this one was chosen)",
					len(missing), len(refs), r.Value, registry.EnvVar)
			}
			fmt.Fprintf(out, "all %d images present in %s\n", len(refs), strings.Join(imageRegistryHosts(refs), ", "))
			return nil
		},
	}
	sel.bind(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up on the registry after this long")
	return cmd
}

func newImagesPullCommand() *cobra.Command {
	var sel imagesSelection
	var socket string
	cmd := &cobra.Command{
		Use:   "pull",
		Short: "Pull every image into " + paths.User + "'s image storage through the node's cri-o",
		Long: "Pulls the images through the CRI image service of the running node's cri-o, so they land in\n" +
			paths.User + "'s image storage, one line per image with its size and time. The node must be up.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, imgs, err := sel.images()
			if err != nil {
				return err
			}
			ctx, cancel := imagesSignalContext(cmd.Context())
			defer cancel()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "pulling %d images from %s through cri-o at %s\n", len(imgs), r.Value, socket)
			return registry.Pull(ctx, socket, registry.Refs(imgs), out)
		},
	}
	sel.bind(cmd)
	cmd.Flags().StringVar(&socket, "cri-socket", paths.CRIOSocket, "the node's cri-o socket")
	return cmd
}

// imageRegistryHosts lists the registry hosts of refs, in order, once each.
func imageRegistryHosts(refs []string) []string {
	var hosts []string
	seen := map[string]bool{}
	for _, ref := range refs {
		h := images.RegistryHost(ref)
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// imagesSignalContext ends ctx on Ctrl-C or SIGTERM, so a slow registry or pull can be interrupted cleanly.
func imagesSignalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
