package host

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// DefaultNamespaceNetwork is slirp4netns's own network, the node's namespace's unless it overlaps
// something (nodes made before u7s chose one have it).
var DefaultNamespaceNetwork = netip.MustParsePrefix("10.0.2.0/24")

// namespaceNetworks are the networks the node's namespace may have, in order: slirp4netns's
// default, then the other /24s of 10.0.0.0/16, then those of 192.168.0.0/16.
func namespaceNetworks() []netip.Prefix {
	out := []netip.Prefix{DefaultNamespaceNetwork}
	for _, base := range [][2]byte{{10, 0}, {192, 168}} {
		for i := 0; i < 256; i++ {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], byte(i), 0}), 24)
			if p != DefaultNamespaceNetwork {
				out = append(out, p)
			}
		}
	}
	return out
}

// ChooseNamespaceNetwork picks the network slirp4netns gives the node's namespace: the first of
// namespaceNetworks that overlaps none of the host's addresses and routes (a host at 10.0.2.15,
// as qemu's and VirtualBox's NAT give, could not reach itself from inside the namespace through
// slirp4netns's 10.0.2.0/24) nor any of avoid (the pods' and the Services' networks).
func ChooseNamespaceNetwork(avoid ...netip.Prefix) (netip.Prefix, error) {
	return defaultSystem().chooseNamespaceNetwork(avoid)
}

func (s *system) chooseNamespaceNetwork(avoid []netip.Prefix) (netip.Prefix, error) {
	nets, err := s.hostNets()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("listing the host's addresses and routes: %w", err)
	}
	var used []string
	for _, n := range nets {
		if n.prefix.Bits() > 0 && n.prefix.Addr().Is4() {
			avoid = append(avoid, n.prefix)
			used = append(used, n.prefix.String())
		}
	}
	for _, c := range namespaceNetworks() {
		if !slices.ContainsFunc(avoid, func(p netip.Prefix) bool { return p.IsValid() && p.Overlaps(c) }) {
			return c, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no /24 of 10.0.0.0/16 or 192.168.0.0/16 is free for the node's namespace: the host uses %s and the cluster %v; "+
		"choose --pod-network-cidr and --service-cidr outside them", strings.Join(used, ", "), avoid[:len(avoid)-len(used)])
}

// NamespaceChildIP is the namespace's own address in its network: slirp4netns gives the guest
// the network's .100 (the gateway is .2, the DNS forwarder .3).
func NamespaceChildIP(network netip.Prefix) netip.Addr {
	a := network.Masked().Addr().As4()
	a[3] = 100
	return netip.AddrFrom4(a)
}
