package watch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/containers/image/v5/docker/reference"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Image is what the signature check needs of an image in cri-o's storage.
type Image struct {
	ID string
	// Tags and Digests are its references (registry/repository:tag, registry/repository@digest).
	Tags, Digests []string
}

func (i Image) name() string {
	switch {
	case len(i.Tags) > 0:
		return i.Tags[0]
	case len(i.Digests) > 0:
		return i.Digests[0]
	}
	return i.ID
}

// Verifier says whether the image at ref (a digest reference) is signed with the node's key, as
// cri-o's policy would at pull: refused is the policy's reason when it is not; err is a failure
// to ask (the registry is unreachable, the image is gone from it).
type Verifier func(ctx context.Context, ref string) (refused string, err error)

// UnsignedImages finds images in the node's storage that its signature policy would refuse now:
// pulled while the policy was loosened, or copied into the storage around it. hosts are the
// registries the policy trusts with the key; an image with no digest there was not pulled
// through the policy at all. unsigned are the images of the critical findings.
func UnsignedImages(ctx context.Context, imgs []Image, hosts []string, verify Verifier) (out []Finding, unsigned []Image) {
	for _, img := range imgs {
		subject := fmt.Sprintf("%s (%s)", img.name(), shortID(img.ID))
		var refs []string
		for _, d := range img.Digests {
			if n, err := reference.ParseNormalizedNamed(d); err == nil && slices.Contains(hosts, reference.Domain(n)) {
				refs = append(refs, d)
			}
		}
		if len(refs) == 0 {
			out = append(out, Finding{ID: "image-unsigned", Priority: Critical, Check: "images", Subject: subject,
				Message: fmt.Sprintf("image %s has no digest in the signing registry (%s): it did not come through the signature policy", subject, strings.Join(hosts, ", ")),
				Fix:     removeFix + ", and find out how it got there"})
			unsigned = append(unsigned, img)
			continue
		}
		var refused []string
		var failed []string
		signed := false
		for _, ref := range refs {
			r, err := verify(ctx, ref)
			switch {
			case err != nil:
				failed = append(failed, err.Error())
			case r != "":
				refused = append(refused, r)
			default:
				signed = true
			}
			if signed {
				break
			}
		}
		switch {
		case signed:
		case len(refused) > 0:
			out = append(out, Finding{ID: "image-unsigned", Priority: Critical, Check: "images", Subject: subject,
				Message: fmt.Sprintf("image %s is not signed with the node's key: %s", subject, strings.Join(refused, "; ")),
				Fix:     removeFix + ", check the node's policy.json, and sign the images it should run (u7s images sign)"})
			unsigned = append(unsigned, img)
		default:
			out = append(out, Finding{ID: "image-unverified", Priority: Warning, Check: "images", Subject: subject,
				Message: fmt.Sprintf("the signature of image %s could not be checked: %s", subject, strings.Join(failed, "; ")),
				Fix:     "make the registry reachable from the node, or remove the image if the registry no longer has it"})
		}
	}
	return out, unsigned
}

const removeFix = "delete the pods that run it, then u7s check all --remove-unsigned-images"

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// StoredImages asks cri-o (its CRI socket) for the images in the node's storage.
func StoredImages(ctx context.Context, socket string) ([]Image, error) {
	conn, err := criConn(socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := runtimeapi.NewImageServiceClient(conn).ListImages(cctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing cri-o's images (%s): %w", socket, err)
	}
	out := make([]Image, 0, len(list.Images))
	for _, i := range list.Images {
		out = append(out, Image{ID: i.Id, Tags: i.RepoTags, Digests: i.RepoDigests})
	}
	return out, nil
}

// RemoveImages removes images from the node's storage through cri-o; an image a container
// still uses is refused by cri-o, and named in the error.
func RemoveImages(ctx context.Context, socket string, imgs []Image) error {
	conn, err := criConn(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	is := runtimeapi.NewImageServiceClient(conn)
	var errs []error
	for _, img := range imgs {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := is.RemoveImage(cctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: img.ID}})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", img.name(), err))
		}
	}
	return errors.Join(errs...)
}
