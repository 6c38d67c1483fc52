package nsinit

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/utils/ptr"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/namespace"
)

// Interface is slirp4netns's tap device inside the namespace.
const Interface = "tap0"

// namespaceSysctls are per network namespace: the host's values do not carry over.
var namespaceSysctls = map[string]string{
	"net/ipv4/ip_forward": "1",
	// Sockets may bind the host's address, which is not local here (see Network).
	"net/ipv4/ip_nonlocal_bind": "1",
	// Replies from the host's address arrive on tap0, which carries that address too.
	"net/ipv4/conf/all/accept_local":  "1",
	"net/ipv4/conf/tap0/accept_local": "1",
	// kube-proxy's Service rules must see bridged pod traffic.
	"net/bridge/bridge-nf-call-iptables":  "1",
	"net/bridge/bridge-nf-call-ip6tables": "1",
}

// Network gives the namespace the host's address, so that the node's InternalIP is the host's
// and not slirp4netns's 10.0.2.100, which every node shares. The address is put on tap0 (the
// kubelet checks that its --node-ip is on an interface), but its route in the local table is
// removed: traffic to the host's address still leaves through slirp4netns to the host, so that
// the host's own services (a registry.local on this host) stay reachable, and the node's own
// ports come back in through the port forwards. Replies to what the namespace itself opened
// from that address are the exception (repliesToHostAddress).
func Network(n *config.Node) error {
	for k, v := range namespaceSysctls {
		p := "/proc/sys/" + k
		if _, err := os.Stat(p); err != nil {
			continue // bridge sysctls appear only with br_netfilter
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			return fmt.Errorf("setting %s=%s inside the namespace: %w", strings.ReplaceAll(k, "/", "."), v, err)
		}
	}
	// Unprivileged ICMP sockets for every group; only groups mapped into the namespace count.
	if max := maxMappedGID(); max > 0 {
		if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte(fmt.Sprintf("0 %d", max)), 0o644); err != nil {
			return fmt.Errorf("setting net.ipv4.ping_group_range inside the namespace: %w", err)
		}
	}
	if err := fenceClusterNetworks(n); err != nil {
		return err
	}
	ip := net.ParseIP(n.AdvertiseAddress).To4()
	if ip == nil {
		return fmt.Errorf("advertise address %q is not IPv4", n.AdvertiseAddress)
	}
	link, err := netlink.LinkByName(Interface)
	if err != nil {
		return fmt.Errorf("finding %s: %w", Interface, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", addr, Interface, err)
	}
	local := &netlink.Route{
		Table: 255, Type: 2 /* RTN_LOCAL */, Dst: addr.IPNet, Src: ip, LinkIndex: link.Attrs().Index,
		Scope: netlink.SCOPE_HOST, Protocol: 2, /* kernel */
	}
	if err := netlink.RouteDel(local); err != nil {
		return fmt.Errorf("removing the local route of %s: %w", ip, err)
	}
	if err := repliesToHostAddress(ip, link); err != nil {
		return err
	}
	return repliesToClientAddresses()
}

const (
	// hostAddressMark marks the connections the namespace opens from the host's address (a
	// bit no other rule writer of the namespace uses: kube-proxy has 0x4000 and 0x8000,
	// kube-router's policies 0x10000 and 0x20000; namespace.ClientAddressMark is the next).
	hostAddressMark = 0x1000000
	// hostAddressTable is the routing table where the host's address is local.
	hostAddressTable = 199
	// hostAddressRulePriority puts the rule before the main table (32766) and before the
	// client addresses' (a connection from the host's address has both marks: that address is
	// not local either).
	hostAddressRulePriority = 98
	// clientAddressRulePriority comes right after it.
	clientAddressRulePriority = 99
)

// repliesToHostAddress delivers here the replies to connections the namespace opened from the
// host's address, which the main tables route out through slirp4netns (see Network): a
// process that binds the node's address (a hostNetwork pod, upstream's HostPort spec) and
// talks to a pod gets the pod's answer. The connection is marked as it starts, its replies
// carry the mark, and the mark selects a table where the address is local. Connections from
// outside to the host's address are not marked and still leave for the host.
func repliesToHostAddress(ip net.IP, link netlink.Link) error {
	host := &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}
	route := &netlink.Route{
		Table: hostAddressTable, Type: unix.RTN_LOCAL, Dst: host, Src: ip, LinkIndex: link.Attrs().Index,
		Scope: netlink.SCOPE_HOST,
	}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("adding %s as local in routing table %d: %w", ip, hostAddressTable, err)
	}
	if err := markRoutingRule(hostAddressMark, hostAddressTable, hostAddressRulePriority); err != nil {
		return fmt.Errorf("adding the routing rule for replies to %s: %w", ip, err)
	}
	comment := []string{"-m", "comment", "--comment", "u7s: replies to the host's address stay here"}
	return appendMangle(markRules(hostAddressMark,
		slices.Concat([]string{"-s", ip.String() + "/32", "-m", "conntrack", "--ctstate", "NEW"}, comment), comment))
}

// repliesToClientAddresses delivers here the replies to the port driver's connections, which
// it dials from a forwarded client's own address (internal/namespace, portChild) so that a
// NetworkPolicy's ipBlock applies to the client: marked as they start from an address that is
// not the namespace's, their replies are routed by a table where every address is local.
// Accepted sockets inherit the mark (tcp_fwmark_accept), so that a server in the namespace's
// own network (a hostNetwork pod) answers such a client here too. The routing rule comes
// last: the port driver dials from a client's address only once it is there.
func repliesToClientAddresses() error {
	if err := os.WriteFile("/proc/sys/net/ipv4/tcp_fwmark_accept", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("setting net.ipv4.tcp_fwmark_accept inside the namespace: %w", err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	route := &netlink.Route{
		Table: namespace.ClientAddressTable, Type: unix.RTN_LOCAL, LinkIndex: lo.Attrs().Index, Scope: netlink.SCOPE_HOST,
		Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)},
	}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("adding every address as local in routing table %d: %w", namespace.ClientAddressTable, err)
	}
	comment := []string{"-m", "comment", "--comment", "u7s: replies to forwarded clients' addresses stay here"}
	if err := appendMangle(markRules(namespace.ClientAddressMark,
		slices.Concat([]string{"-p", "tcp", "-m", "addrtype", "!", "--src-type", "LOCAL", "-m", "conntrack", "--ctstate", "NEW"}, comment),
		comment)); err != nil {
		return err
	}
	if err := markRoutingRule(namespace.ClientAddressMark, namespace.ClientAddressTable, clientAddressRulePriority); err != nil {
		return fmt.Errorf("adding the routing rule for replies to forwarded clients: %w", err)
	}
	return nil
}

// markRoutingRule makes packets that carry the mark bit look up table (unless such a rule is
// there).
func markRoutingRule(mark uint32, table, priority int) error {
	rules, err := netlink.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("listing the routing rules: %w", err)
	}
	if slices.ContainsFunc(rules, func(r netlink.Rule) bool { return r.Table == table && r.Mark == mark }) {
		return nil
	}
	rule := netlink.NewRule()
	rule.Family = netlink.FAMILY_V4
	rule.Mark, rule.Mask = mark, ptr.To(mark)
	rule.Table, rule.Priority = table, priority
	return netlink.RuleAdd(rule)
}

// appendMangle appends rules to the mangle table, each unless it is there.
func appendMangle(rules []markRule) error {
	for _, r := range rules {
		args := func(op string) []string { return append([]string{"-w", "-t", "mangle", op, r.chain}, r.spec...) }
		// -C first: namespace-init may run again in the same namespace.
		if exec.Command("iptables", args("-C")...).Run() == nil {
			continue
		}
		if out, err := exec.Command("iptables", args("-A")...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %s: %w: %s", strings.Join(args("-A"), " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// markRule is an iptables rule of the mangle table.
type markRule struct {
	chain string
	spec  []string
}

// markRules are the rules that put the mark bit on the connections the namespace starts that
// match (OUTPUT), and on each packet that comes back on them (PREROUTING).
func markRules(mark uint32, match, comment []string) []markRule {
	m := fmt.Sprintf("%#x/%#x", mark, mark)
	return []markRule{
		{"OUTPUT", slices.Concat(match, []string{"-j", "CONNMARK", "--set-xmark", m})},
		{"PREROUTING", slices.Concat([]string{"-m", "connmark", "--mark", m}, comment, []string{"-j", "MARK", "--set-xmark", m})},
	}
}

// maxMappedGID is the highest group id mapped into this user namespace.
func maxMappedGID() int {
	b, err := os.ReadFile("/proc/self/gid_map")
	if err != nil {
		return 0
	}
	max := 0
	for _, line := range strings.Split(string(b), "\n") {
		var inside, outside, count int
		if _, err := fmt.Sscan(line, &inside, &outside, &count); err == nil && inside+count-1 > max {
			max = inside + count - 1
		}
	}
	return max
}

// FenceInterface is a bridge without ports (this kernel may lack the dummy driver) that
// swallows traffic to the cluster's networks.
const FenceInterface = "u7s-fence"

// fenceClusterNetworks routes the Service and pod networks to a portless bridge. Without it, a
// packet to a Service IP that kube-proxy has not (yet) rewritten, or to a pod address no
// node owns, would follow the default route out through slirp4netns to whatever has that
// address on the host's network. kube-proxy's DNAT and flannel's more specific routes still
// win; everything else is dropped inside the node.
func fenceClusterNetworks(n *config.Node) error {
	link, err := netlink.LinkByName(FenceInterface)
	if err != nil {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: FenceInterface}}); err != nil {
			return fmt.Errorf("creating %s: %w", FenceInterface, err)
		}
		if link, err = netlink.LinkByName(FenceInterface); err != nil {
			return err
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return err
	}
	for _, cidr := range []string{n.ServiceCIDR, n.PodCIDR} {
		_, dst, err := net.ParseCIDR(cidr)
		if err != nil {
			return fmt.Errorf("cluster network %q: %w", cidr, err)
		}
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Priority: 4096}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("fencing %s: %w", cidr, err)
		}
	}
	return nil
}
