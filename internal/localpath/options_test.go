package localpath

import (
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v11/controller"

	"github.com/u7s/u7s/internal/localpath/provisioner"
)

func provisionOptions(name string, reclaim corev1.PersistentVolumeReclaimPolicy) controller.ProvisionOptions {
	return controller.ProvisionOptions{
		StorageClass: &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: StorageClassName}, ReclaimPolicy: &reclaim},
		PVName:       name,
		PVC: &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c-" + name, Annotations: map[string]string{provisioner.SelectedNodeAnnotation: "h1"}},
			Spec:       corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}},
		},
		SelectedNode: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "h1"}},
	}
}
