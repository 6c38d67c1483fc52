// Package flannel deploys flannel, the pod network of u7s clusters: the objects of
// manifests/kube-flannel.yml, with the image, pod CIDR and backend u7s chose.
package flannel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/u7s/u7s/manifests"
)

const (
	// Namespace holds flannel's DaemonSet, ConfigMap and ServiceAccount.
	Namespace = "kube-flannel"
	// DaemonSetName is flannel's DaemonSet.
	DaemonSetName = "kube-flannel-ds"
	// ConfigMapName holds cni-conf.json and net-conf.json.
	ConfigMapName = "kube-flannel-cfg"
	// Backend is flannel's backend, VXLAN: the one a rootless node can carry: UDP 8472,
	// which the node forwards from the host; flanneld's --iface is not set, it takes the
	// host-side address the node gives it (SetNodePublicIP).
	Backend = "vxlan"
	// DefaultCNIConfDir is where install-cni puts 10-flannel.conflist for cri-o.
	DefaultCNIConfDir = "/etc/cni/net.d"

	// FieldManager names u7s as the writer of the objects it applies.
	FieldManager = "u7s"

	netConfKey = "net-conf.json"
)

// Options choose what differs between clusters. flanneld's public IP is per node and
// therefore not here: see SetNodePublicIP.
type Options struct {
	// Image is flannel's image, <U7S_REGISTRY>/flannel:<FLANNEL_VERSION>; required.
	Image string
	// PodCIDR is the cluster's pod network, kube-controller-manager's --cluster-cidr
	// (kubeadm's networking.podSubnet); required, IPv4.
	PodCIDR string
	// CNIConfDir is cri-o's CNI configuration directory; DefaultCNIConfDir if empty.
	CNIConfDir string
	// APIServer, HOST:PORT, is where flanneld reaches the API (the control-plane endpoint)
	// instead of the kubernetes Service: that address works only once kube-proxy has its
	// rules, so after a node restart flanneld would crash-loop, and every pod with it.
	APIServer string
}

func (o Options) withDefaults() (Options, error) {
	if o.Image == "" {
		return o, errors.New("flannel: no image given: pass <U7S_REGISTRY>/flannel:<FLANNEL_VERSION>")
	}
	p, err := netip.ParsePrefix(o.PodCIDR)
	if err != nil || !p.Addr().Is4() {
		return o, fmt.Errorf("flannel: pod CIDR %q is not an IPv4 CIDR such as 10.244.0.0/16: set it to kube-controller-manager's --cluster-cidr", o.PodCIDR)
	}
	if p != p.Masked() {
		return o, fmt.Errorf("flannel: pod CIDR %s has host bits set: use %s", p, p.Masked())
	}
	if o.CNIConfDir == "" {
		o.CNIConfDir = DefaultCNIConfDir
	}
	return o, nil
}

// netConf is flanneld's net-conf.json, as far as u7s's manifest uses it. Other keys
// (EnableIPv4 among them, which flanneld defaults to true) must stay absent.
type netConf struct {
	Network        string         `json:"Network"`
	EnableNFTables bool           `json:"EnableNFTables"`
	Backend        netConfBackend `json:"Backend"`
}

type netConfBackend struct {
	Type string `json:"Type"`
}

// Objects returns flannel's objects in the order to create them, each a typed object
// (*corev1.Namespace, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding,
// *corev1.ServiceAccount, *corev1.ConfigMap, *appsv1.DaemonSet), configured by o.
func Objects(o Options) ([]runtime.Object, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	objs, err := decode(manifests.KubeFlannel)
	if err != nil {
		return nil, err
	}
	var haveCM, haveDS bool
	for _, obj := range objs {
		switch obj := obj.(type) {
		case *corev1.ConfigMap:
			if obj.Name == ConfigMapName {
				if err := setNetConf(obj, o); err != nil {
					return nil, err
				}
				haveCM = true
			}
		case *appsv1.DaemonSet:
			if obj.Name == DaemonSetName {
				if err := setDaemonSet(obj, o); err != nil {
					return nil, err
				}
				haveDS = true
			}
		}
	}
	if !haveCM || !haveDS {
		return nil, fmt.Errorf("manifest %s lacks ConfigMap %s or DaemonSet %s", manifests.KubeFlannel, ConfigMapName, DaemonSetName)
	}
	return objs, nil
}

// decode reads a multi-document manifest into typed objects.
func decode(name string) ([]runtime.Object, error) {
	data, err := manifests.Get(name)
	if err != nil {
		return nil, err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", name, err)
		}
		if isEmptyYAML(doc) {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", name, err)
		}
		objs = append(objs, obj)
	}
}

func setNetConf(cm *corev1.ConfigMap, o Options) error {
	var nc netConf
	if err := json.Unmarshal([]byte(cm.Data[netConfKey]), &nc); err != nil {
		return fmt.Errorf("manifest %s: %s: %w", manifests.KubeFlannel, netConfKey, err)
	}
	nc.Network = o.PodCIDR
	nc.Backend.Type = Backend
	b, err := json.MarshalIndent(nc, "", "  ")
	if err != nil {
		return err
	}
	cm.Data[netConfKey] = string(b) + "\n"
	return nil
}

func setDaemonSet(ds *appsv1.DaemonSet, o Options) error {
	spec := &ds.Spec.Template.Spec
	for i := range spec.InitContainers {
		spec.InitContainers[i].Image = o.Image
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		c.Image = o.Image
		if c.Name == "kube-flannel" && o.APIServer != "" {
			host, port, err := net.SplitHostPort(o.APIServer)
			if err != nil {
				return fmt.Errorf("flannel: API server %q: want HOST:PORT", o.APIServer)
			}
			// Explicit variables win over the ones the kubelet injects for the Service.
			c.Env = append(c.Env, corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: host},
				corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: port})
		}
	}
	for i := range spec.Volumes {
		if v := &spec.Volumes[i]; v.Name == "cni" && v.HostPath != nil {
			v.HostPath.Path = o.CNIConfDir
			return nil
		}
	}
	return fmt.Errorf("manifest %s: DaemonSet %s has no hostPath volume \"cni\"", manifests.KubeFlannel, DaemonSetName)
}

// Apply creates flannel's objects, or updates them to match o. Running it again with the
// same options changes nothing; the DaemonSet rolls out only when its pod template changes.
func Apply(ctx context.Context, cs kubernetes.Interface, o Options) error {
	objs, err := Objects(o)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		var err error
		switch obj := obj.(type) {
		case *corev1.Namespace:
			err = createOrUpdate(ctx, cs.CoreV1().Namespaces(), obj)
		case *rbacv1.ClusterRole:
			err = createOrUpdate(ctx, cs.RbacV1().ClusterRoles(), obj)
		case *rbacv1.ClusterRoleBinding:
			err = createOrUpdate(ctx, cs.RbacV1().ClusterRoleBindings(), obj)
		case *corev1.ServiceAccount:
			err = createOrUpdate(ctx, cs.CoreV1().ServiceAccounts(obj.Namespace), obj)
		case *corev1.ConfigMap:
			err = createOrUpdate(ctx, cs.CoreV1().ConfigMaps(obj.Namespace), obj)
		case *appsv1.DaemonSet:
			err = createOrUpdate(ctx, cs.AppsV1().DaemonSets(obj.Namespace), obj)
		default:
			err = fmt.Errorf("u7s cannot apply a %T", obj)
		}
		if err != nil {
			return fmt.Errorf("applying flannel: %w", err)
		}
	}
	return nil
}

// typedClient is the part of a client-go typed client that createOrUpdate uses.
type typedClient[T metav1.Object] interface {
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

func createOrUpdate[T interface {
	metav1.Object
	runtime.Object
}](ctx context.Context, c typedClient[T], obj T) error {
	kind := fmt.Sprintf("%T", obj)
	if gvks, _, err := scheme.Scheme.ObjectKinds(obj); err == nil && len(gvks) > 0 {
		kind = gvks[0].Kind
	}
	_, err := c.Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager})
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s %s: %w", kind, obj.GetName(), err)
	}
	cur, err := c.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading %s %s: %w", kind, obj.GetName(), err)
	}
	obj.SetResourceVersion(cur.GetResourceVersion())
	obj.SetLabels(merged(cur.GetLabels(), obj.GetLabels()))
	obj.SetAnnotations(merged(cur.GetAnnotations(), obj.GetAnnotations()))
	if _, err := c.Update(ctx, obj, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("updating %s %s: %w", kind, obj.GetName(), err)
	}
	return nil
}

// isEmptyYAML reports a document with nothing but comments.
func isEmptyYAML(doc []byte) bool {
	var v any
	return yaml.Unmarshal(doc, &v) == nil && v == nil
}

// merged returns cur overlaid with want: labels and annotations that others (the API
// server, kubectl rollout restart) added survive an update.
func merged(cur, want map[string]string) map[string]string {
	if len(cur) == 0 {
		return want
	}
	out := maps.Clone(cur)
	maps.Copy(out, want)
	return out
}
