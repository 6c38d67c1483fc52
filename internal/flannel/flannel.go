// Package flannel deploys flannel, the pod network of u7s clusters: the objects of
// manifests/kube-flannel.yml, with the image, pod CIDR and backend u7s chose.
package flannel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/u7s/u7s/internal/apply"
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
	objs, err := apply.Decode(manifests.KubeFlannel)
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
			if err := apply.SetAPIServer(c, o.APIServer); err != nil {
				return fmt.Errorf("flannel: %w", err)
			}
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

// Apply creates flannel's objects, or updates them where they exist.
func Apply(ctx context.Context, cs kubernetes.Interface, o Options) error {
	objs, err := Objects(o)
	if err != nil {
		return err
	}
	if err := apply.Objects(ctx, cs, objs); err != nil {
		return fmt.Errorf("applying flannel: %w", err)
	}
	return nil
}
