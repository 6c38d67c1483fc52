// Package balancer writes the configuration of the balancers in front of a cluster: haproxy
// before the control planes' API servers (the specification's frontend and checks, plus the
// retries a powered-off control plane needs) and, for several balancer hosts, keepalived
// holding a virtual IP on whichever of them runs a healthy haproxy.
package balancer

import (
	"fmt"
	"net"
	"sort"
	"strings"
)

// Server is one backend: a node's name, its host address and (an API server's) port.
type Server struct {
	Name    string
	Address string
	Port    int
}

// HAProxy is what haproxy.cfg is made of.
type HAProxy struct {
	// Port is the frontend's port: the control-plane endpoint's (8443 in the specification).
	Port int
	// ControlPlanes are the API servers' hosts and ports.
	ControlPlanes []Server
	// Nodes, when set, get frontends on 80 and 443 to their ingress (IngressPorts).
	Nodes []Server
	// ProxyProtocol sends the client's address to the ingress in a PROXY protocol v2 header.
	ProxyProtocol bool
}

// IngressPorts are the ports each node serves its ingress on (the host's side).
var IngressPorts = []int{80, 443}

// Check says what is wrong with h, naming the fix.
func (h HAProxy) Check() error {
	if err := checkPort("frontend", h.Port); err != nil {
		return err
	}
	if len(h.ControlPlanes) == 0 {
		return fmt.Errorf("no control planes: the cluster lists no node labelled node-role.kubernetes.io/control-plane with an InternalIP")
	}
	for _, s := range h.ControlPlanes {
		if err := checkServer(s); err != nil {
			return err
		}
		if err := checkPort("server "+s.Name+"'s API server", s.Port); err != nil {
			return err
		}
	}
	for _, s := range h.Nodes {
		if err := checkServer(s); err != nil {
			return err
		}
	}
	for _, p := range IngressPorts {
		if h.Nodes != nil && p == h.Port {
			return fmt.Errorf("the API frontend's port %d is also an ingress port: use another --port", p)
		}
	}
	return nil
}

func checkPort(what string, p int) error {
	if p < 1 || p > 65535 {
		return fmt.Errorf("the %s port %d is not a port (1-65535)", what, p)
	}
	return nil
}

func checkServer(s Server) error {
	if s.Name == "" || strings.ContainsAny(s.Name, " \t\n#") {
		return fmt.Errorf("server name %q cannot be a haproxy server name", s.Name)
	}
	if net.ParseIP(s.Address) == nil {
		return fmt.Errorf("server %s: address %q is not an IP address (name each control plane by its host's IP address)", s.Name, s.Address)
	}
	return nil
}

// Config is haproxy.cfg. The API's frontend and backend are the specification's (podsec-k8s:
// frontend on 8443 in mode tcp, option httpchk GET /healthz expecting 200, ssl-hello-chk,
// roundrobin, each server checked), with what a powered-off control plane needs on top:
// retries and option redispatch send a connection the dead server does not take to another
// one, and short connect and check timeouts mark it down in seconds, so that a client gets a
// delay rather than an error. Servers are sorted by name: the file changes only when the
// cluster does.
func (h HAProxy) Config() (string, error) {
	if err := h.Check(); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(`# Written by u7s balancer config; write it again after a control plane joins or leaves.
global
    log stdout format raw local0
    maxconn 4000

defaults
    mode tcp
    log global
    option tcplog
    retries 3
    option redispatch
    timeout connect 2s
    timeout check 2s
    timeout client 1h
    timeout server 1h

`)
	fmt.Fprintf(&b, `frontend apiserver
    bind *:%d
    default_backend apiserver

backend apiserver
    option httpchk GET /healthz
    http-check expect status 200
    option ssl-hello-chk
    balance roundrobin
`, h.Port)
	for _, s := range sorted(h.ControlPlanes) {
		fmt.Fprintf(&b, "    server %s %s check inter 2s fall 2 rise 1\n", s.Name, hostPort(s.Address, s.Port))
	}
	if h.Nodes != nil {
		send := ""
		if h.ProxyProtocol {
			send = " send-proxy-v2"
		}
		for _, p := range IngressPorts {
			fmt.Fprintf(&b, "\nfrontend ingress-%d\n    bind *:%d\n    default_backend ingress-%d\n\nbackend ingress-%d\n    balance roundrobin\n", p, p, p, p)
			for _, s := range sorted(h.Nodes) {
				fmt.Fprintf(&b, "    server %s %s check inter 2s fall 2 rise 1%s\n", s.Name, hostPort(s.Address, p), send)
			}
		}
	}
	return b.String(), nil
}

func hostPort(addr string, port int) string {
	return net.JoinHostPort(addr, fmt.Sprint(port))
}

func sorted(s []Server) []Server {
	out := append([]Server{}, s...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Keepalived is what keepalived.conf is made of: one VRRP instance holding VIP on Interface.
type Keepalived struct {
	VIP       string
	Interface string
	// Priority decides which healthy balancer holds the VIP (the highest; 1-254).
	Priority int
	// RouterID is the VRRP instance's id, the same on every balancer of the VIP (1-255) and
	// unique on the network segment.
	RouterID int
}

// Check says what is wrong with k, naming the fix.
func (k Keepalived) Check() error {
	if k.VIP == "" {
		return fmt.Errorf("--keepalived needs --vip IP: the virtual IP the balancers share, the cluster's --control-plane-endpoint")
	}
	ip := net.ParseIP(k.VIP)
	if ip == nil {
		return fmt.Errorf("--vip %q is not an IP address", k.VIP)
	}
	if ip.To4() == nil {
		return fmt.Errorf("--vip %s: only an IPv4 virtual address is supported", k.VIP)
	}
	if k.Interface == "" || strings.ContainsAny(k.Interface, " \t\n/{}") || len(k.Interface) > 15 {
		return fmt.Errorf("--interface %q is not a network interface name (the balancer host's interface on the VIP's network, as ip link lists it)", k.Interface)
	}
	if k.Priority < 1 || k.Priority > 254 {
		return fmt.Errorf("--priority %d is out of 1-254 (give each balancer its own; the highest healthy one holds the VIP)", k.Priority)
	}
	if k.RouterID < 1 || k.RouterID > 255 {
		return fmt.Errorf("--router-id %d is out of 1-255", k.RouterID)
	}
	return nil
}

// HAProxyPIDFile is where haproxy's unit keeps its master's pid (Debian's, RHEL's, ALT's:
// haproxy -p /run/haproxy.pid), which keepalived's check reads.
const HAProxyPIDFile = "/run/haproxy.pid"

// Config is keepalived.conf. Every balancer starts as BACKUP and the highest priority among
// those whose haproxy runs holds the VIP: a check every 2 seconds that haproxy's process lives
// puts the instance in FAULT after two failures, and the VIP moves to the next balancer within
// a few advertisement intervals. The check is a script (the shell's kill -0 on haproxy's pid),
// not keepalived's process tracking, which needs the kernel's process events connector that a
// container (LXC, systemd-nspawn) does not have. Preemption is off so that a balancer that
// comes back does not take the VIP again and break connections twice.
func (k Keepalived) Config() (string, error) {
	if err := k.Check(); err != nil {
		return "", err
	}
	return fmt.Sprintf(`# Written by u7s balancer config --keepalived: the same on every balancer but --priority.
global_defs {
    router_id u7s_%[1]d
    enable_script_security
    script_user root
    vrrp_garp_master_refresh 60
}

vrrp_script haproxy {
    script "/bin/sh -c 'kill -0 \"$(cat %[5]s)\"'"
    interval 2
    timeout 2
    fall 2
    rise 1
}

vrrp_instance u7s_api {
    state BACKUP
    nopreempt
    interface %[2]s
    virtual_router_id %[1]d
    priority %[3]d
    advert_int 1
    virtual_ipaddress {
        %[4]s/32 dev %[2]s
    }
    track_script {
        haproxy
    }
}
`, k.RouterID, k.Interface, k.Priority, k.VIP, HAProxyPIDFile), nil
}
