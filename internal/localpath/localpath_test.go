package localpath

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"

	"github.com/u7s/u7s/internal/localpath/provisioner"
	"github.com/u7s/u7s/internal/paths"
)

func TestObjects(t *testing.T) {
	objs, err := Objects(Options{Image: "registry.local/k8s-p10/u7s-local-path:v1", APIServer: "10.0.0.1:6443"})
	if err != nil {
		t.Fatal(err)
	}
	var ds *appsv1.DaemonSet
	var sc *storagev1.StorageClass
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.DaemonSet:
			ds = o
		case *storagev1.StorageClass:
			sc = o
		}
	}
	if ds == nil || sc == nil {
		t.Fatalf("objects lack the DaemonSet or the StorageClass: %T", objs)
	}
	c := ds.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.local/k8s-p10/u7s-local-path:v1" || !slices.Contains(c.Args, "--dir="+paths.VolumesDir) {
		t.Errorf("container %s %v", c.Image, c.Args)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "KUBERNETES_SERVICE_HOST" && e.Value == "10.0.0.1" }) {
		t.Errorf("env %v lacks the API server", c.Env)
	}
	if ds.Spec.Template.Spec.Volumes[0].HostPath.Path != paths.VolumesDir || c.VolumeMounts[0].MountPath != paths.VolumesDir {
		t.Errorf("the volumes directory is not mounted at its own path: %+v %+v", ds.Spec.Template.Spec.Volumes, c.VolumeMounts)
	}
	if sc.Name != StorageClassName || sc.Annotations[DefaultClassAnnotation] != "true" || sc.Provisioner != provisioner.Name ||
		sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		t.Errorf("StorageClass %+v", sc)
	}
	// An upgrade leaves the class as the cluster has it (an admin may have chosen another default).
	objs, err = Objects(Options{Image: "x", Upgrade: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if _, ok := o.(*storagev1.StorageClass); ok {
			t.Error("an upgrade applies the StorageClass")
		}
	}
	if _, err := Objects(Options{}); err == nil {
		t.Error("no image: no error")
	}
}

// Reset keeps the volumes of Retain claims (with their records) and what it does not know,
// and removes the others.
func TestCleanup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "volumes")
	if err := Prepare(dir, os.Getuid(), os.Getgid()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("volumes directory %v, %v; want mode 0700", fi.Mode(), err)
	}
	volume(t, dir, "pvc-keep", corev1.PersistentVolumeReclaimRetain)
	volume(t, dir, "pvc-gone", corev1.PersistentVolumeReclaimDelete)
	if err := os.Mkdir(filepath.Join(dir, "someones"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pvc-orphan.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	kept, err := Cleanup(dir, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "pvc-keep"), filepath.Join(dir, "pvc-keep.json"), filepath.Join(dir, "someones")}
	if !slices.Equal(kept, want) {
		t.Errorf("kept %v, want %v", kept, want)
	}
	for _, gone := range []string{"pvc-gone", "pvc-gone.json", "pvc-orphan.json"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); err == nil {
			t.Errorf("%s was left", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "pvc-keep.json")); err != nil {
		t.Errorf("the Retain volume's record went: %v", err)
	}
}

// --local-storage-dir is refused where Prepare would take a directory that is not its own.
func TestCheckDir(t *testing.T) {
	tmp := t.TempDir()
	full := filepath.Join(tmp, "full")
	if err := os.MkdirAll(filepath.Join(full, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(tmp, "old")
	volume(t, mkdir(t, old), "pvc-1", corev1.PersistentVolumeReclaimRetain)
	if err := os.Mkdir(filepath.Join(old, "lost+found"), 0o700); err != nil {
		t.Fatal(err)
	}
	for dir, ok := range map[string]bool{
		"": true, paths.VolumesDir: true, "/srv/u7s-volumes": true, "/data/k8s/volumes": true,
		"relative/dir": false, "/": false, "/var": false, "/var/lib": false, "/etc/u7s/v": false, "/usr": false,
		paths.Home + "/volumes": false, "/srv": false, "/tmp/v": false,
	} {
		if err := CheckDir(dir); (err == nil) != ok {
			t.Errorf("CheckDir(%q) = %v, want ok %v", dir, err, ok)
		}
	}
	for dir, ok := range map[string]bool{filepath.Join(tmp, "new"): true, old: true, full: false} {
		if err := checkContents(dir); (err == nil) != ok {
			t.Errorf("checkContents(%q) = %v, want ok %v", dir, err, ok)
		}
	}
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func volume(t *testing.T, dir, name string, reclaim corev1.PersistentVolumeReclaimPolicy) {
	t.Helper()
	p := &provisioner.Provisioner{Node: "h1", Dir: dir}
	o := provisionOptions(name, reclaim)
	if _, _, err := p.Provision(t.Context(), o); err != nil {
		t.Fatal(err)
	}
}
