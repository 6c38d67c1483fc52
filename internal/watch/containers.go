package watch

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Container is what the root-filesystem check needs of a running container.
type Container struct {
	Namespace, Pod, Name string
	// UpperDir is the writable layer of its overlay root filesystem, on the host.
	UpperDir string
	// Mounts are the paths mounted over the root filesystem (volumes, /etc/hosts, ...): what the
	// runtime put there for them is not the container's writing.
	Mounts []string
	// Started is when it started: files the runtime wrote while making it are older.
	Started time.Time
}

// maxListed is how many paths one finding names.
const maxListed = 5

// RootfsWrites finds files the running containers wrote into their root filesystems (not into
// a volume): podsec-inotify's check. A root filesystem that stays as its image made it is what
// a read-only root filesystem guarantees; a write there is a program writing where no one
// looks, or someone who got in.
func RootfsWrites(cs []Container) ([]Finding, error) {
	var fsOut []Finding
	for _, c := range cs {
		var written []string
		err := filepath.WalkDir(c.UpperDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, c.UpperDir), "/")
			if under(rel, c.Mounts) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || d.Type()&fs.ModeCharDevice != 0 { // directories; whiteouts of deleted files
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil // gone meanwhile
			}
			if !fi.ModTime().After(c.Started) { // the runtime's, while making the container
				return nil
			}
			written = append(written, rel)
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			return fsOut, fmt.Errorf("reading the root filesystem of %s/%s %s: %w", c.Namespace, c.Pod, c.Name, err)
		}
		if len(written) == 0 {
			continue
		}
		sort.Strings(written)
		listed := written
		if len(listed) > maxListed {
			listed = append(listed[:maxListed:maxListed], fmt.Sprintf("and %d more", len(written)-maxListed))
		}
		subject := fmt.Sprintf("%s/%s %s", c.Namespace, c.Pod, c.Name)
		fsOut = append(fsOut, Finding{ID: "container-rootfs-write", Priority: Warning, Check: "containers", Subject: subject,
			Count:   len(written),
			Message: fmt.Sprintf("%s wrote %d file(s) into its root filesystem: %s", subject, len(written), strings.Join(listed, ", ")),
			Fix:     "securityContext.readOnlyRootFilesystem: true, and an emptyDir volume where it must write"})
	}
	return fsOut, nil
}

// under says whether p is one of mounts or inside one.
func under(p string, mounts []string) bool {
	for _, m := range mounts {
		m = strings.TrimSuffix(m, "/")
		if p == m || strings.HasPrefix(p, m+"/") {
			return true
		}
	}
	return false
}

// RunningContainers asks cri-o (its CRI socket) for the running containers and where their
// writable layers are: the runtime spec's root is the overlay's merged directory, its upper
// layer the diff beside it. storageRoot is cri-o's graphroot on the host.
func RunningContainers(ctx context.Context, socket, storageRoot string) ([]Container, error) {
	conn, err := criConn(socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := rs.ListContainers(cctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
	if err != nil {
		return nil, fmt.Errorf("listing cri-o's containers (%s): %w", socket, err)
	}
	var out []Container
	for _, c := range list.Containers {
		st, err := rs.ContainerStatus(cctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.Id, Verbose: true})
		if err != nil {
			continue // gone meanwhile
		}
		var info struct {
			RuntimeSpec struct {
				Root   struct{ Path string }
				Mounts []struct{ Destination string }
			}
		}
		if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.RuntimeSpec.Root.Path == "" {
			return nil, fmt.Errorf("cri-o gave no runtime spec for container %s", c.Id)
		}
		upper := filepath.Join(filepath.Dir(info.RuntimeSpec.Root.Path), "diff")
		if !strings.HasPrefix(upper, filepath.Clean(storageRoot)+"/") {
			return nil, fmt.Errorf("container %s's root %s is not in cri-o's storage %s", c.Id, info.RuntimeSpec.Root.Path, storageRoot)
		}
		ct := Container{
			Namespace: c.Labels["io.kubernetes.pod.namespace"], Pod: c.Labels["io.kubernetes.pod.name"],
			Name: c.Metadata.GetName(), UpperDir: upper,
			Started: time.Unix(0, st.Status.StartedAt),
		}
		for _, m := range info.RuntimeSpec.Mounts {
			ct.Mounts = append(ct.Mounts, m.Destination)
		}
		out = append(out, ct)
	}
	return out, nil
}

// criConn is a connection to cri-o's CRI socket on the host.
func criConn(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}
