// Package localpath is the cluster's default storage: a StorageClass whose claims get a
// directory on the node where their first pod is scheduled (a local PersistentVolume with node
// affinity), made by a provisioner pod on every node (cmd/u7s-local-path, package provisioner)
// under the node's volumes directory (paths.VolumesDir). It holds the objects init installs
// (manifests/u7s-local-path.yml) and the host's side: the directory that init and join make and
// that reset empties.
package localpath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/u7s/u7s/internal/apply"
	"github.com/u7s/u7s/internal/localpath/provisioner"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/manifests"
)

const (
	// StorageClassName is the default StorageClass init installs (kind's and k3s's name).
	StorageClassName = "local-path"
	// Namespace holds the provisioner's DaemonSet.
	Namespace = "kube-system"
	// DaemonSetName is the provisioner's DaemonSet, and its pods' app.kubernetes.io/name.
	DaemonSetName = "u7s-local-path"
	// DefaultClassAnnotation marks the cluster's default StorageClass.
	DefaultClassAnnotation = "storageclass.kubernetes.io/is-default-class"
)

// Options are what the objects depend on.
type Options struct {
	// Image is the provisioner's image, <U7S_REGISTRY>/u7s-local-path:<LOCAL_PATH_IMAGE_TAG>.
	Image string
	// APIServer is HOST:PORT of the API server the pods talk to (the node's endpoint).
	APIServer string
	// Upgrade leaves the StorageClass as the cluster has it: an admin may have made another
	// class the default, which an upgrade must not undo.
	Upgrade bool
}

// Objects returns the provisioner's objects in the order to create them, configured by o.
func Objects(o Options) ([]runtime.Object, error) {
	if o.Image == "" {
		return nil, errors.New("local-path: no image given: pass <U7S_REGISTRY>/u7s-local-path:<LOCAL_PATH_IMAGE_TAG>")
	}
	objs, err := apply.Decode(manifests.LocalPath)
	if err != nil {
		return nil, err
	}
	var out []runtime.Object
	found := false
	for _, obj := range objs {
		switch obj := obj.(type) {
		case *appsv1.DaemonSet:
			if obj.Name != DaemonSetName {
				break
			}
			found = true
			if err := setDaemonSet(obj, o); err != nil {
				return nil, err
			}
		case *storagev1.StorageClass:
			if obj.Provisioner != provisioner.Name {
				return nil, fmt.Errorf("manifest %s: StorageClass %s has provisioner %s, not %s", manifests.LocalPath, obj.Name, obj.Provisioner, provisioner.Name)
			}
			if o.Upgrade {
				continue
			}
		}
		out = append(out, obj)
	}
	if !found {
		return nil, fmt.Errorf("manifest %s lacks DaemonSet %s", manifests.LocalPath, DaemonSetName)
	}
	return out, nil
}

func setDaemonSet(ds *appsv1.DaemonSet, o Options) error {
	for i := range ds.Spec.Template.Spec.Containers {
		c := &ds.Spec.Template.Spec.Containers[i]
		c.Image = o.Image
		c.Args = []string{"--node=$(NODE_NAME)", "--dir=" + paths.VolumesDir}
		if o.APIServer != "" {
			if err := apply.SetAPIServer(c, o.APIServer); err != nil {
				return fmt.Errorf("local-path: %w", err)
			}
		}
	}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == "volumes" && v.HostPath != nil {
			v.HostPath.Path = paths.VolumesDir
			return nil
		}
	}
	return fmt.Errorf("manifest %s: DaemonSet %s has no hostPath volume \"volumes\"", manifests.LocalPath, DaemonSetName)
}

// Apply creates the provisioner's objects, or updates them where they exist.
func Apply(ctx context.Context, cs kubernetes.Interface, o Options) error {
	objs, err := Objects(o)
	if err != nil {
		return err
	}
	if err := apply.Objects(ctx, cs, objs); err != nil {
		return fmt.Errorf("applying the local volume provisioner: %w", err)
	}
	return nil
}

// Running says whether node's provisioner pod runs: "provisioner running", or what it is.
func Running(ctx context.Context, cs kubernetes.Interface, node string) string {
	pods, err := cs.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/name=" + DaemonSetName, FieldSelector: "spec.nodeName=" + node})
	switch {
	case err != nil:
		return "cannot list its provisioner's pod: " + err.Error()
	case len(pods.Items) == 0:
		return fmt.Sprintf("NO provisioner pod on this node (kubectl -n %s get ds %s)", Namespace, DaemonSetName)
	}
	p := pods.Items[0]
	if p.Status.Phase == corev1.PodRunning {
		return "provisioner running"
	}
	return fmt.Sprintf("provisioner %s (kubectl -n %s describe pod %s)", p.Status.Phase, Namespace, p.Name)
}

// Prepare makes the node's volumes directory (init and join, as root): owned by the
// namespace's root (uid, gid: u7s-admin on the host), mode 0700, so that no other user of the
// host, and no pod's user, can reach a volume except through its own mount. A directory that
// exists (volumes kept by an earlier reset, or a file system mounted there) is kept, its owner
// and mode set.
func Prepare(dir string, uid, gid int) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("creating the volumes directory %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory: move it away, or mount the file system for volumes there", dir)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("giving %s to %s: %w", dir, paths.User, err)
	}
	return os.Chmod(dir, 0o700)
}

// Cleanup is reset's part: it removes the volumes of dir whose reclaim policy is Delete (the
// cluster would have removed them with their claims) and keeps those of Retain claims, which
// it lists on out; dir itself goes when nothing is kept. It returns the kept volumes' paths.
func Cleanup(dir string, out io.Writer) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var kept []string
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, provisioner.RecordSuffix) {
			continue
		}
		rec, err := provisioner.ReadRecord(dir, name)
		if err != nil {
			// No readable record: not one of the provisioner's, or damaged. Keep it.
			kept = append(kept, filepath.Join(dir, name))
			fmt.Fprintf(out, "    keeping %s: %v\n", filepath.Join(dir, name), err)
			continue
		}
		if rec.ReclaimPolicy == corev1.PersistentVolumeReclaimRetain {
			kept = append(kept, filepath.Join(dir, name))
			fmt.Fprintf(out, "    keeping %s: volume of claim %s (%s), reclaim policy Retain\n", filepath.Join(dir, name), rec.Claim, rec.Size)
			continue
		}
		if err := provisioner.RemoveVolume(dir, name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(kept) == 0 && len(errs) == 0 {
		// Records without a volume, then the directory; a mount point stays (EBUSY).
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), provisioner.RecordSuffix) {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(out, "    keeping %s: %v\n", dir, err)
		}
	}
	return kept, errors.Join(errs...)
}
