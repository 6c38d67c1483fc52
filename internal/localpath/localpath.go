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

// CheckDir checks --local-storage-dir before anything changes: "" (the default) or an absolute
// path that is none of the system's or the node's own directories, nor above them (Prepare makes
// it u7s-admin's, mode 0700), and that is new, empty, a file system's fresh mount point or a
// volumes directory of an earlier node.
func CheckDir(dir string) error {
	if dir == "" || filepath.Clean(dir) == paths.VolumesDir {
		return nil
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("%q is not an absolute path: give one such as /srv/u7s-volumes", dir)
	}
	dir = filepath.Clean(dir)
	for _, p := range []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin", "/sys", "/tmp",
		"/usr", "/var/log", "/var/tmp", "/var/run", paths.Home, paths.ReleasesDir, paths.KubernetesDir, paths.ConfigDir, paths.LogDir, paths.RunDir} {
		if dir == p || strings.HasPrefix(dir, p+"/") || strings.HasPrefix(p, dir+"/") {
			return fmt.Errorf("%s is %s or shares it: u7s makes the directory u7s-admin's with mode 0700; give one of its own, such as /srv/u7s-volumes", dir, p)
		}
	}
	if strings.Count(dir, "/") < 2 || strings.HasPrefix(paths.VolumesDir, dir+"/") {
		return fmt.Errorf("%s is a top-level or system directory: u7s makes it u7s-admin's with mode 0700; give one of its own, such as /srv/u7s-volumes", dir)
	}
	return checkContents(dir)
}

// checkContents: dir is new, empty, a fresh mount point or a volumes directory of u7s.
func checkContents(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	for _, e := range ents {
		n := e.Name()
		if n == "lost+found" || strings.HasSuffix(n, provisioner.RecordSuffix) || names[n+provisioner.RecordSuffix] {
			continue
		}
		return fmt.Errorf("%s holds %s, which is not a local volume of u7s: give an empty directory or a file system's mount point", dir, n)
	}
	return nil
}

// Cleanup is reset's part: it removes the volumes of dir whose reclaim policy is Delete (the
// cluster would have removed them with their claims) and keeps those of Retain claims, which
// it lists on out, with anything else in dir. It returns the kept entries' paths; dir itself is
// the host state's to remove (reset's RemoveRecorded), where u7s made it and nothing is kept.
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
		if strings.HasSuffix(name, provisioner.RecordSuffix) || name == "lost+found" {
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
			kept = append(kept, filepath.Join(dir, name), filepath.Join(dir, name+provisioner.RecordSuffix))
			fmt.Fprintf(out, "    keeping %s: volume of claim %s (%s), reclaim policy Retain\n", filepath.Join(dir, name), rec.Claim, rec.Size)
			continue
		}
		if err := provisioner.RemoveVolume(dir, name); err != nil {
			errs = append(errs, err)
		}
	}
	// Records whose volume is gone.
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, provisioner.RecordSuffix) {
			if _, err := os.Lstat(filepath.Join(dir, strings.TrimSuffix(n, provisioner.RecordSuffix))); errors.Is(err, os.ErrNotExist) {
				_ = os.Remove(filepath.Join(dir, n))
			}
		}
	}
	return kept, errors.Join(errs...)
}
