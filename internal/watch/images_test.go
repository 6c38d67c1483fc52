package watch

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestUnsignedImages(t *testing.T) {
	imgs := []Image{
		{ID: "sha256:aaaaaaaaaaaaaaaa", Tags: []string{"registry.local/u7s/pause:3.10"}, Digests: []string{"registry.local/u7s/pause@sha256:1111111111111111111111111111111111111111111111111111111111111111"}},
		{ID: "sha256:bbbbbbbbbbbbbbbb", Tags: []string{"registry.local/e2e-unsigned/busybox:1.35.0"}, Digests: []string{"registry.local/e2e-unsigned/busybox@sha256:2222222222222222222222222222222222222222222222222222222222222222"}},
		{ID: "sha256:cccccccccccccccc", Tags: []string{"docker.io/library/nginx:1"}, Digests: []string{"docker.io/library/nginx@sha256:3333333333333333333333333333333333333333333333333333333333333333"}},
		{ID: "sha256:dddddddddddddddd", Tags: []string{"localhost/loaded:1"}},
		{ID: "sha256:eeeeeeeeeeeeeeee", Tags: []string{"registry.local/gone/x:1"}, Digests: []string{"registry.local/gone/x@sha256:4444444444444444444444444444444444444444444444444444444444444444"}},
		// Signed under its second name (the registry's location).
		{ID: "sha256:ffffffffffffffff", Digests: []string{"registry.local/u7s/etcd@sha256:5555555555555555555555555555555555555555555555555555555555555555", "registry.local:80/u7s/etcd@sha256:5555555555555555555555555555555555555555555555555555555555555555"}},
	}
	var asked []string
	verify := func(_ context.Context, ref string) (string, error) {
		asked = append(asked, ref)
		switch {
		case ref == imgs[0].Digests[0], ref == imgs[5].Digests[1]:
			return "", nil
		case ref == imgs[4].Digests[0]:
			return "", errors.New("manifest unknown")
		}
		return "A signature was required, but no signature exists", nil
	}
	got, unsigned := UnsignedImages(context.Background(), imgs, []string{"registry.local", "registry.local:80"}, verify)
	var gotIDs []string
	for _, f := range got {
		gotIDs = append(gotIDs, f.ID+" "+f.Subject+" "+string(f.Priority))
	}
	want := []string{
		"image-unsigned registry.local/e2e-unsigned/busybox:1.35.0 (bbbbbbbbbbbb) critical",
		"image-unsigned docker.io/library/nginx:1 (cccccccccccc) critical",
		"image-unsigned localhost/loaded:1 (dddddddddddd) critical",
		"image-unverified registry.local/gone/x:1 (eeeeeeeeeeee) warning",
	}
	if !slices.Equal(gotIDs, want) {
		t.Errorf("findings:\n%q\nwant\n%q", gotIDs, want)
	}
	var unsignedIDs []string
	for _, i := range unsigned {
		unsignedIDs = append(unsignedIDs, i.ID)
	}
	if want := []string{imgs[1].ID, imgs[2].ID, imgs[3].ID}; !slices.Equal(unsignedIDs, want) {
		t.Errorf("unsigned images %q, want %q (not the one that could not be checked)", unsignedIDs, want)
	}
	// Images not from the signing registry are not looked up there.
	for _, ref := range asked {
		if ref == imgs[2].Digests[0] {
			t.Errorf("asked the verifier about %s, which is not from the signing registry", ref)
		}
	}
}
