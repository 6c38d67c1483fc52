package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/u7s/u7s/images"
	"github.com/u7s/u7s/internal/registry"
)

// Push uploads img as ref, with the registry package's transport rule and credentials.
func Push(ctx context.Context, ref string, img v1.Image) error {
	r, err := registry.ParseRef(ref)
	if err != nil {
		return err
	}
	if err := remote.Write(r, img, registry.RemoteOptions(ctx)...); err != nil {
		hint := ""
		var op *net.OpError
		var dns *net.DNSError
		switch {
		case errors.As(err, &dns):
			hint = fmt.Sprintf("; %s does not resolve: start the local registry (scripts/local-registry.sh start) or fix --registry", r.Context().RegistryStr())
		case errors.As(err, &op) || errors.Is(err, syscall.ECONNREFUSED):
			hint = fmt.Sprintf("; is the registry %s running? (scripts/local-registry.sh status)", r.Context().RegistryStr())
		}
		return fmt.Errorf("pushing %s: %w%s", ref, err, hint)
	}
	return nil
}

// WriteOCI adds img to the OCI image layout in dir (created if needed), named ref: an image
// of the same name already there is replaced. `skopeo copy oci:DIR:REF docker://REF` and
// containerd's import read the name from the annotations.
func WriteOCI(dir, ref string, img v1.Image) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("OCI layout %s: %w", dir, err)
		}
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return fmt.Errorf("creating OCI layout %s: %w", dir, err)
		}
	}
	anns := map[string]string{
		ocispec.AnnotationRefName:  ref,
		"io.containerd.image.name": ref,
	}
	if err := p.ReplaceImage(img, match.Annotation(ocispec.AnnotationRefName, ref), layout.WithAnnotations(anns)); err != nil {
		return fmt.Errorf("writing %s to OCI layout %s: %w", ref, dir, err)
	}
	return nil
}

// Options are those of `u7s images build`.
type Options struct {
	// BinDir holds the binaries of `make components`.
	BinDir string
	// Registry is the prefix of the node images, e.g. "registry.local/k8s-p10".
	Registry string
	// Push uploads the images to Registry.
	Push bool
	// OCIDir, if set, receives the images as an OCI layout for offline transfer.
	OCIDir string
	// Only names the images to build; empty means every node image.
	Only []string
	// TestImages adds the test images (upstream's e2e-test-images that its Conformance specs pull).
	TestImages bool
	// TmpDir holds the layers while they are built; "" means the default.
	TmpDir string
}

// Run builds the selected images and pushes them and/or writes them to an OCI layout,
// printing one line per image to out. It returns the references it pushed, in order.
func Run(ctx context.Context, o Options, out io.Writer) (pushed []string, err error) {
	if !o.Push && o.OCIDir == "" {
		return nil, errors.New("nothing to do: give --push to push the images to --registry, or --oci-dir DIR to write an OCI layout, or both")
	}
	if o.Registry == "" {
		return nil, errors.New("no registry: give --registry, e.g. --registry registry.local/k8s-p10")
	}
	o.Registry = strings.TrimSuffix(o.Registry, "/")
	if _, err := name.NewRepository(o.Registry+"/pause", name.StrictValidation); err != nil {
		return nil, fmt.Errorf("--registry %q is not a valid registry prefix: %w", o.Registry, err)
	}
	specs, err := images.Select(o.Only, o.TestImages)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(o.BinDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--bin-dir %s is not a directory: build the components with `make components` (they land in _output/bin) or point --bin-dir at them", o.BinDir)
	}
	b := &Builder{BinDir: o.BinDir}
	if err := b.Check(specs); err != nil {
		return nil, err
	}
	if o.OCIDir != "" {
		if o.OCIDir, err = filepath.Abs(o.OCIDir); err != nil {
			return nil, err
		}
	}

	for _, s := range specs {
		if err := ctx.Err(); err != nil {
			return pushed, err
		}
		start := time.Now()
		ref := s.Reference(o.Registry)
		if err := buildOne(ctx, b, s, ref, o, out, start); err != nil {
			return pushed, err
		}
		if o.Push {
			pushed = append(pushed, ref)
		}
	}
	return pushed, nil
}

func buildOne(ctx context.Context, b *Builder, s images.Spec, ref string, o Options, out io.Writer, start time.Time) error {
	img, err := b.Build(s, o.TmpDir)
	if err != nil {
		return err
	}
	defer img.Close()
	var done []string
	if o.Push {
		if err := Push(ctx, ref, img.Image); err != nil {
			return err
		}
		done = append(done, "pushed")
	}
	if o.OCIDir != "" {
		if err := WriteOCI(o.OCIDir, ref, img.Image); err != nil {
			return err
		}
		done = append(done, "written to "+o.OCIDir)
	}
	fmt.Fprintf(out, "%-24s %-60s %8.1f MB %6.1fs  %s\n", s.Name, ref,
		float64(img.LayerSize)/(1<<20), time.Since(start).Seconds(), strings.Join(done, ", "))
	return nil
}
