// Package provisioner is the in-pod side of the default StorageClass (cmd/u7s-local-path): the
// provisioner that makes and removes the volumes' directories of its node, and the record it
// keeps beside each one. Package localpath installs it and does the host's side.
package provisioner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v11/controller"

	"github.com/u7s/u7s/internal/fsutil"
)

const (
	// Name is the provisioner's name in the StorageClass.
	Name = "u7s.io/local-path"
	// NodeAnnotation on a PersistentVolume names the node whose provisioner made it.
	NodeAnnotation = "local.u7s.io/node"
	// SelectedNodeAnnotation is the scheduler's choice of node on a claim (WaitForFirstConsumer).
	SelectedNodeAnnotation = "volume.kubernetes.io/selected-node"
)

// Provisioner gives each claim of the class a directory on the node its first pod was
// scheduled to. One runs on every node (the DaemonSet) and serves only the claims whose
// selected node is its own, and deletes only its own node's volumes: no leader, no helper
// pods, and a node that is down delays only its own volumes.
type Provisioner struct {
	// Node is the Node this provisioner runs on.
	Node string
	// Dir is the node's volumes directory as the provisioner sees it (paths.VolumesDir,
	// mounted at the same path).
	Dir string
	// Client finds the claim's first pod, whose user the directory is given to.
	Client kubernetes.Interface
}

var (
	_ controller.Provisioner   = (*Provisioner)(nil)
	_ controller.Qualifier     = (*Provisioner)(nil)
	_ controller.DeletionGuard = (*Provisioner)(nil)
)

// ShouldProvision takes the claims scheduled to this node only.
func (p *Provisioner) ShouldProvision(_ context.Context, pvc *corev1.PersistentVolumeClaim) bool {
	return pvc.Annotations[SelectedNodeAnnotation] == p.Node
}

// ShouldDelete takes this node's volumes only.
func (p *Provisioner) ShouldDelete(_ context.Context, pv *corev1.PersistentVolume) bool {
	return pv.Annotations[NodeAnnotation] == p.Node
}

// Provision makes the claim's directory and returns its PersistentVolume: a local volume
// bound to this node.
func (p *Provisioner) Provision(ctx context.Context, o controller.ProvisionOptions) (*corev1.PersistentVolume, controller.ProvisioningState, error) {
	pvc := o.PVC
	if o.SelectedNode == nil {
		return nil, controller.ProvisioningFinished, fmt.Errorf("StorageClass %s must have volumeBindingMode WaitForFirstConsumer: a local volume is made on the node of its first pod", className(o))
	}
	if o.SelectedNode.Name != p.Node {
		return nil, controller.ProvisioningNoChange, &controller.IgnoredError{Reason: "the claim's node is " + o.SelectedNode.Name}
	}
	for _, m := range pvc.Spec.AccessModes {
		if m != corev1.ReadWriteOnce && m != corev1.ReadWriteOncePod {
			return nil, controller.ProvisioningFinished, fmt.Errorf("access mode %s is not possible with a directory of one node: ask for ReadWriteOnce or ReadWriteOncePod", m)
		}
	}
	if pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return nil, controller.ProvisioningFinished, errors.New("volumeMode Block is not possible with a directory: ask for Filesystem")
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	owner := p.consumerOwner(ctx, pvc)
	reclaim := corev1.PersistentVolumeReclaimDelete
	if o.StorageClass != nil && o.StorageClass.ReclaimPolicy != nil {
		reclaim = *o.StorageClass.ReclaimPolicy
	}
	rec := Record{
		Claim:         pvc.Namespace + "/" + pvc.Name,
		Node:          p.Node,
		Size:          size.String(),
		ReclaimPolicy: reclaim,
		Created:       time.Now().UTC(),
	}
	dir, err := p.makeVolume(o.PVName, owner, rec)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	hostname := o.SelectedNode.Labels[corev1.LabelHostname]
	if hostname == "" {
		hostname = o.SelectedNode.Name
	}
	mode := corev1.PersistentVolumeFilesystem
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        o.PVName,
			Annotations: map[string]string{NodeAnnotation: p.Node},
		},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   pvc.Spec.AccessModes,
			VolumeMode:                    &mode,
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: sizeOrDefault(size)},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: dir},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname},
				}}}},
			}},
		},
	}
	if o.StorageClass != nil {
		pv.Spec.MountOptions = o.StorageClass.MountOptions
	}
	return pv, controller.ProvisioningFinished, nil
}

// sizeOrDefault is the volume's capacity: what the claim asked (a claim must ask some).
func sizeOrDefault(q resource.Quantity) resource.Quantity {
	if q.IsZero() {
		return resource.MustParse("1Gi")
	}
	return q
}

func className(o controller.ProvisionOptions) string {
	if o.StorageClass != nil {
		return o.StorageClass.Name
	}
	return "(unknown)"
}

// Delete removes a volume's directory and record (the reclaim policy Delete).
func (p *Provisioner) Delete(_ context.Context, pv *corev1.PersistentVolume) error {
	if pv.Annotations[NodeAnnotation] != p.Node {
		return &controller.IgnoredError{Reason: "the volume is on node " + pv.Annotations[NodeAnnotation]}
	}
	if pv.Spec.Local == nil || pv.Spec.Local.Path != filepath.Join(p.Dir, pv.Name) {
		return fmt.Errorf("volume %s is not a directory %s/%s of this provisioner: delete it by hand", pv.Name, p.Dir, pv.Name)
	}
	return RemoveVolume(p.Dir, pv.Name)
}

// Owner is who a new volume's directory belongs to: the first pod's user and fsGroup, where
// its spec says them.
type Owner struct {
	UID, GID *int64
}

// consumerOwner is the owner the claim's first pod asks for: its containers' (or its pod's)
// runAsUser and its fsGroup. Unknown (no pod found, or the image's user): nil.
func (p *Provisioner) consumerOwner(ctx context.Context, pvc *corev1.PersistentVolumeClaim) Owner {
	if p.Client == nil {
		return Owner{}
	}
	pods, err := p.Client.CoreV1().Pods(pvc.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return Owner{}
	}
	for i := range pods.Items {
		if uses(&pods.Items[i], pvc.Name) {
			return OwnerOf(&pods.Items[i])
		}
	}
	return Owner{}
}

// uses reports whether pod mounts the claim (directly, or as its generic ephemeral volume).
func uses(pod *corev1.Pod, claim string) bool {
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim:
			return true
		case v.Ephemeral != nil && pod.Name+"-"+v.Name == claim:
			return true
		}
	}
	return false
}

// OwnerOf is the user and group pod's containers write as: a runAsUser every container
// shares (its own or the pod's), and the pod's fsGroup.
func OwnerOf(pod *corev1.Pod) Owner {
	var o Owner
	sc := pod.Spec.SecurityContext
	if sc != nil {
		o.GID = sc.FSGroup
	}
	var uid *int64
	for i, c := range pod.Spec.Containers {
		u := (*int64)(nil)
		if sc != nil {
			u = sc.RunAsUser
		}
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			u = c.SecurityContext.RunAsUser
		}
		if u == nil || (i > 0 && (uid == nil || *uid != *u)) {
			return Owner{GID: o.GID}
		}
		uid = u
	}
	o.UID = uid
	return o
}

// Mode is the mode of a new volume's directory for owner: only the pod's user (and, with an
// fsGroup, its group, set-gid so that new files keep it); any user when the pod's user is not
// known from its spec (the image's user). Either way the volumes directory above (0700, the
// namespace's root) keeps every other user of the host and every other pod out.
func (o Owner) Mode() os.FileMode {
	switch {
	case o.GID != nil:
		return 0o770 | os.ModeSetgid
	case o.UID != nil:
		return 0o700
	}
	return 0o777
}

// Record is what the volumes directory keeps beside each volume: the claim it was made for,
// the size asked (not enforced: a directory has no size unless the file system has project
// quotas), and the reclaim policy, which u7s reset reads to keep Retain volumes.
type Record struct {
	Claim         string                               `json:"claim"`
	Node          string                               `json:"node"`
	Size          string                               `json:"size"`
	ReclaimPolicy corev1.PersistentVolumeReclaimPolicy `json:"reclaimPolicy"`
	Created       time.Time                            `json:"created"`
}

// recordPath is the record of volume name in dir.
func recordPath(dir, name string) string { return filepath.Join(dir, name+RecordSuffix) }

// RecordSuffix ends the name of a volume's record in the volumes directory.
const RecordSuffix = ".json"

// ReadRecord reads the record of volume name in dir.
func ReadRecord(dir, name string) (Record, error) {
	var rec Record
	data, err := os.ReadFile(recordPath(dir, name))
	if err != nil {
		return rec, fmt.Errorf("no record of the provisioner (%w)", err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, fmt.Errorf("its record %s is damaged: %w", recordPath(dir, name), err)
	}
	return rec, nil
}

// makeVolume creates dir/name for owner, with its record, and returns its path. An existing
// directory (a retry after the PersistentVolume could not be saved) is reused.
func (p *Provisioner) makeVolume(name string, owner Owner, rec Record) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("volume name %q is not a directory name", name)
	}
	dir := filepath.Join(p.Dir, name)
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return "", err
	}
	if err := fsutil.WriteFileAtomic(recordPath(p.Dir, name), append(data, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("recording volume %s: %w", name, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("creating volume %s: %w", dir, err)
	}
	uid, gid := -1, -1
	if owner.UID != nil {
		uid = int(*owner.UID)
	}
	if owner.GID != nil {
		gid = int(*owner.GID)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return "", fmt.Errorf("giving volume %s to the pod's user: %w", dir, err)
	}
	// Chmod, not Mkdir's mode, which the umask narrows and which cannot set set-gid.
	if err := os.Chmod(dir, owner.Mode()); err != nil {
		return "", fmt.Errorf("setting the mode of volume %s: %w", dir, err)
	}
	return dir, nil
}

// RemoveVolume removes volume name of dir and its record; a volume already gone is no error.
func RemoveVolume(dir, name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return fmt.Errorf("volume name %q is not a directory name", name)
	}
	if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("removing volume %s: %w", name, err)
	}
	if err := os.Remove(recordPath(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the record of volume %s: %w", name, err)
	}
	return nil
}
