package provisioner

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v11/controller"
)

func claim(node string, modes ...corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data-pg-0", Annotations: map[string]string{SelectedNodeAnnotation: node}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: modes,
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func options(pvc *corev1.PersistentVolumeClaim, node string, reclaim corev1.PersistentVolumeReclaimPolicy) controller.ProvisionOptions {
	return controller.ProvisionOptions{
		StorageClass: &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}, ReclaimPolicy: &reclaim},
		PVName:       "pvc-1234",
		PVC:          pvc,
		SelectedNode: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node, Labels: map[string]string{corev1.LabelHostname: node}}},
	}
}

// The claim's first pod's user and fsGroup get the directory; the PV is a local volume of the
// node with the claim's size, recorded beside it.
func TestProvisionGivesTheDirectoryToThePodsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	dir := t.TempDir()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg-0"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000)), FSGroup: ptr(int64(2000))},
			Containers:      []corev1.Container{{Name: "pg"}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-pg-0"}}}},
		},
	}
	p := &Provisioner{Node: "h1", Dir: dir, Client: fake.NewClientset(pod)}
	pv, state, err := p.Provision(context.Background(), options(claim("h1"), "h1", corev1.PersistentVolumeReclaimRetain))
	if err != nil || state != controller.ProvisioningFinished {
		t.Fatalf("Provision: %v, %v", state, err)
	}
	want := filepath.Join(dir, "pvc-1234")
	if pv.Spec.Local == nil || pv.Spec.Local.Path != want {
		t.Fatalf("PV source %+v, want local %s", pv.Spec.PersistentVolumeSource, want)
	}
	if pv.Annotations[NodeAnnotation] != "h1" || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Errorf("PV %+v", pv)
	}
	if got := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values; len(got) != 1 || got[0] != "h1" {
		t.Errorf("node affinity %v", got)
	}
	if got := pv.Spec.Capacity[corev1.ResourceStorage]; got.String() != "2Gi" {
		t.Errorf("capacity %s", got.String())
	}
	fi, err := os.Stat(want)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o770 || fi.Mode()&os.ModeSetgid == 0 {
		t.Errorf("mode %v, want drwxrws--- (the pod's user and group only)", fi.Mode())
	}
	uid, gid := owner(t, want)
	if uid != 1000 || gid != 2000 {
		t.Errorf("owner %d:%d, want the pod's 1000:2000", uid, gid)
	}
	rec, err := ReadRecord(dir, "pvc-1234")
	if err != nil || rec.Claim != "db/data-pg-0" || rec.Size != "2Gi" || rec.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Errorf("record %+v, %v", rec, err)
	}
}

// A pod whose user its spec does not say (the image's) gets a directory any user may write:
// the volumes directory above keeps everyone else out.
func TestProvisionForAnUnknownUser(t *testing.T) {
	dir := t.TempDir()
	p := &Provisioner{Node: "h1", Dir: dir, Client: fake.NewClientset()}
	if _, _, err := p.Provision(context.Background(), options(claim("h1"), "h1", corev1.PersistentVolumeReclaimDelete)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "pvc-1234"))
	if err != nil || fi.Mode().Perm() != 0o777 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
}

// Each node's provisioner takes only its own node's claims and volumes.
func TestOnlyThisNodesClaimsAndVolumes(t *testing.T) {
	dir := t.TempDir()
	p := &Provisioner{Node: "h1", Dir: dir}
	ctx := context.Background()
	if !p.ShouldProvision(ctx, claim("h1")) || p.ShouldProvision(ctx, claim("h2")) {
		t.Error("ShouldProvision does not follow the claim's selected node")
	}
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-1", Annotations: map[string]string{NodeAnnotation: "h2"}}}
	if p.ShouldDelete(ctx, pv) {
		t.Error("ShouldDelete takes another node's volume")
	}
	var ignored *controller.IgnoredError
	if err := p.Delete(ctx, pv); !errors.As(err, &ignored) {
		t.Errorf("Delete of another node's volume: %v, want IgnoredError", err)
	}
	if _, _, err := p.Provision(ctx, options(claim("h2"), "h2", corev1.PersistentVolumeReclaimDelete)); !errors.As(err, &ignored) {
		t.Errorf("Provision for another node: %v, want IgnoredError", err)
	}
}

// What a directory of one node cannot be is refused with the fix.
func TestProvisionRefusesSharedModes(t *testing.T) {
	p := &Provisioner{Node: "h1", Dir: t.TempDir()}
	_, state, err := p.Provision(context.Background(), options(claim("h1", corev1.ReadWriteMany), "h1", corev1.PersistentVolumeReclaimDelete))
	if err == nil || state != controller.ProvisioningFinished {
		t.Errorf("ReadWriteMany: %v, %v", state, err)
	}
	o := options(claim("h1"), "h1", corev1.PersistentVolumeReclaimDelete)
	o.SelectedNode = nil
	if _, _, err := p.Provision(context.Background(), o); err == nil {
		t.Error("a claim without a selected node (Immediate binding) was provisioned")
	}
}

// Delete removes the directory and its record, and refuses a path it did not make.
func TestDeleteRemovesTheVolume(t *testing.T) {
	dir := t.TempDir()
	p := &Provisioner{Node: "h1", Dir: dir}
	ctx := context.Background()
	pv, _, err := p.Provision(ctx, options(claim("h1"), "h1", corev1.PersistentVolumeReclaimDelete))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pvc-1234", "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.Delete(ctx, pv); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"pvc-1234", "pvc-1234.json"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); err == nil {
			t.Errorf("%s left", gone)
		}
	}
	pv.Spec.Local.Path = "/etc"
	if err := p.Delete(ctx, pv); err == nil {
		t.Error("Delete of a volume outside the volumes directory was done")
	}
}

// OwnerOf takes the containers' shared user, or none when they differ.
func TestOwnerOf(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{SecurityContext: &corev1.SecurityContext{RunAsUser: ptr(int64(10))}},
		{SecurityContext: &corev1.SecurityContext{RunAsUser: ptr(int64(11))}},
	}}}
	if o := OwnerOf(pod); o.UID != nil {
		t.Errorf("two users: owner %d", *o.UID)
	}
	pod.Spec.Containers[1].SecurityContext.RunAsUser = ptr(int64(10))
	if o := OwnerOf(pod); o.UID == nil || *o.UID != 10 || o.Mode() != 0o700 {
		t.Errorf("one user: %+v", o)
	}
}
