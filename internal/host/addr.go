package host

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// hostNet is a network the host reaches directly: an interface address's subnet or a route.
type hostNet struct {
	prefix netip.Prefix
	what   string // "address 192.168.1.5/24 on eth0", "route 10.8.0.0/16 dev tun0"
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

func linkName(index int) string {
	if l, err := netlink.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("if%d", index)
}

// listHostNets lists the subnets of the host's addresses and the destinations of its main
// routing table, IPv4 and IPv6.
func listHostNets() ([]hostNet, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []hostNet
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if !ok {
			continue
		}
		out = append(out, hostNet{p, fmt.Sprintf("address %s on %s", a.IPNet, linkName(a.LinkIndex))})
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		p, ok := prefixOf(r.Dst)
		if !ok {
			continue // default route
		}
		out = append(out, hostNet{p, fmt.Sprintf("route %s dev %s", p, linkName(r.LinkIndex))})
	}
	return out, nil
}

// PrimaryIPv4 is the host's source address towards the internet: the one the API server
// advertises and the certificate names. It asks the kernel for the route to 1.1.1.1,
// which sends nothing.
func PrimaryIPv4() (net.IP, error) {
	const fix = "pass the address to advertise with --apiserver-advertise-address"
	routes, err := netlink.RouteGet(net.IPv4(1, 1, 1, 1))
	if err != nil || len(routes) == 0 {
		if err == nil {
			err = errors.New("no route")
		}
		return nil, fmt.Errorf("the host has no default IPv4 route (%v): %s", err, fix)
	}
	r := routes[0]
	if ip := r.Src.To4(); ip != nil && !ip.IsLoopback() {
		return ip, nil
	}
	// No preferred source: take the first global address of the outgoing interface.
	link, err := netlink.LinkByIndex(r.LinkIndex)
	if err == nil {
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
		for _, a := range addrs {
			if ip := a.IP.To4(); ip != nil && ip.IsGlobalUnicast() {
				return ip, nil
			}
		}
	}
	return nil, fmt.Errorf("the default route has no IPv4 source address: %s", fix)
}

// HasAddress reports whether a is an address of one of the host's interfaces.
func HasAddress(a netip.Addr) bool {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a.Unmap() {
			return true
		}
	}
	return false
}
