package config

import (
	"fmt"

	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"
)

// NodePort is a port a node publishes on its host (forwarded into the namespace).
type NodePort struct {
	Proto string // "tcp" or "udp"
	Port  int
	What  string
	// ControlPlane: only control planes publish it.
	ControlPlane bool
	// APIServer: the port is the API server's (--apiserver-bind-port moves it).
	APIServer bool
}

// DefaultAPIServerPort is the API server's port unless --apiserver-bind-port says otherwise.
const DefaultAPIServerPort = kubeadmconstants.KubeAPIServerPort

// Ports is the one list of the ports of each role (podsec-k8s's: control plane 6443, 2379,
// 2380, 10250, 10256/tcp, 8472/udp; worker 10250, 10256/tcp, 8472/udp).
var Ports = []NodePort{
	{Proto: "tcp", Port: DefaultAPIServerPort, What: "kube-apiserver", ControlPlane: true, APIServer: true},
	{Proto: "tcp", Port: kubeadmconstants.EtcdListenClientPort, What: "etcd clients", ControlPlane: true},
	{Proto: "tcp", Port: kubeadmconstants.EtcdListenPeerPort, What: "etcd peers", ControlPlane: true},
	{Proto: "tcp", Port: kubeadmconstants.KubeletPort, What: "kubelet"},
	{Proto: "tcp", Port: 10256, What: "kube-proxy health"},
	{Proto: "udp", Port: 8472, What: "flannel VXLAN"},
}

// PortsOf lists the ports of role, with the API server on apiPort (0: the default).
func PortsOf(role Role, apiPort int) []NodePort {
	var out []NodePort
	for _, p := range Ports {
		if p.ControlPlane && role != ControlPlane {
			continue
		}
		if p.APIServer && apiPort != 0 {
			p.Port = apiPort
		}
		out = append(out, p)
	}
	return out
}

// RolePorts are the forwards of role, in rootlessctl's syntax.
func RolePorts(role Role, apiPort int) []string {
	var specs []string
	for _, p := range PortsOf(role, apiPort) {
		specs = append(specs, fmt.Sprintf("0.0.0.0:%d:%d/%s", p.Port, p.Port, p.Proto))
	}
	return specs
}
