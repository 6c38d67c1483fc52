package imagebuild

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Load pushes every image of an image archive (a tar of an OCI layout, as make images-archive
// writes it) to registry: an image named <anything>/<repository>:<tag> in the archive becomes
// <registry>/<repository>:<tag>, or <host of registry>/<repository>:<tag> for a test image
// (e2e-test-images/..., library/...), as `u7s images build` names them. It returns the
// references it pushed, in order.
func Load(ctx context.Context, archive, registry string, out io.Writer) (pushed []string, err error) {
	dir, err := os.MkdirTemp("", "u7s-images-load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := untar(archive, dir); err != nil {
		return nil, fmt.Errorf("reading the image archive %s: %w", archive, err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s is not an image archive (a tar of an OCI layout, from make images-archive): %w", archive, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) == 0 {
		return nil, fmt.Errorf("the image archive %s holds no images", archive)
	}
	for _, d := range m.Manifests {
		name := d.Annotations[ocispec.AnnotationRefName]
		if name == "" {
			return pushed, fmt.Errorf("image %s in %s has no name (%s)", d.Digest, archive, ocispec.AnnotationRefName)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return pushed, err
		}
		ref, err := retarget(name, registry)
		if err != nil {
			return pushed, err
		}
		start := time.Now()
		if err := Push(ctx, ref, img); err != nil {
			return pushed, err
		}
		fmt.Fprintf(out, "%-70s pushed %6.1fs\n", ref, time.Since(start).Seconds())
		pushed = append(pushed, ref)
	}
	return pushed, nil
}

// retarget renames an image of the archive into registry (see Load).
func retarget(name, registry string) (string, error) {
	registry = strings.TrimSuffix(registry, "/")
	for _, test := range []string{"/e2e-test-images/", "/library/"} {
		if i := strings.Index(name, test); i >= 0 {
			host, _, _ := strings.Cut(registry, "/")
			return host + name[i:], nil
		}
	}
	i := strings.LastIndex(name, "/")
	if i < 0 {
		return "", fmt.Errorf("image name %q has no repository", name)
	}
	return registry + name[i:], nil
}

// untar unpacks a tar of regular files and directories into dir, refusing paths that leave it.
func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if _, err := io.Copy(w, tr); err != nil {
				w.Close()
				return err
			}
			if err := w.Close(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected entry type %c", h.Name, h.Typeflag)
		}
	}
}
