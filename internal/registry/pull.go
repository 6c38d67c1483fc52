package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pull pulls refs into the image storage of the cri-o listening on criSocket (the node's,
// so u7s-admin's storage), one line per image on out with its size and time. Credentials come from
// the containers auth files; whether a registry is plain HTTP is cri-o's configuration
// (InsecureRegistries). It stops at the first error that means cri-o is gone, and otherwise tries
// every image and reports all failures.
func Pull(ctx context.Context, criSocket string, refs []string, out io.Writer) error {
	fi, err := os.Stat(criSocket)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no cri-o socket at %s: is the node up? run u7s init (or u7s join) first", criSocket)
	case err != nil:
		return fmt.Errorf("cri-o socket %s: %w", criSocket, err)
	case fi.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("%s is not a socket: is the node up? run u7s init (or u7s join) first", criSocket)
	}
	conn, err := grpc.NewClient("unix://"+criSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connecting to cri-o at %s: %w", criSocket, err)
	}
	defer conn.Close()
	images := runtimeapi.NewImageServiceClient(conn)

	var errs []error
	for _, ref := range refs {
		fmt.Fprintf(out, "%s ", ref)
		size, took, err := pullOne(ctx, images, ref)
		if err != nil {
			fmt.Fprintln(out, "FAILED")
			if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable {
				return errors.Join(append(errs, fmt.Errorf("cri-o at %s does not answer (%s): is the node up? run u7s init (or u7s join) first", criSocket, s.Message()))...)
			}
			if ctx.Err() != nil {
				return errors.Join(append(errs, fmt.Errorf("pulling %s: %w", ref, ctx.Err()))...)
			}
			errs = append(errs, fmt.Errorf("pulling %s through cri-o: %w", ref, err))
			continue
		}
		fmt.Fprintf(out, "%s in %.1fs\n", humanSize(size), took.Seconds())
	}
	return errors.Join(errs...)
}

func pullOne(ctx context.Context, images runtimeapi.ImageServiceClient, ref string) (uint64, time.Duration, error) {
	r, err := parseRef(ref)
	if err != nil {
		return 0, 0, err
	}
	creds, err := credentials(r.Context().Name(), r.Context().RegistryStr())
	if err != nil {
		return 0, 0, err
	}
	req := &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}
	if creds.Username != "" || creds.Password != "" || creds.IdentityToken != "" {
		req.Auth = &runtimeapi.AuthConfig{
			Username:      creds.Username,
			Password:      creds.Password,
			IdentityToken: creds.IdentityToken,
			ServerAddress: r.Context().RegistryStr(),
		}
	}
	start := time.Now()
	resp, err := images.PullImage(ctx, req)
	if err != nil {
		return 0, 0, err
	}
	took := time.Since(start)
	st, err := images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: resp.GetImageRef()}})
	if err != nil {
		return 0, took, fmt.Errorf("pulled as %s, but its status: %w", resp.GetImageRef(), err)
	}
	return st.GetImage().GetSize(), took, nil
}

func humanSize(n uint64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
