package cni

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// SubnetEnv is what flanneld writes to /run/flannel/subnet.env once it holds a lease:
// the cluster network(s), this node's subnet, the MTU of the overlay and whether
// flanneld masquerades traffic leaving the cluster network itself.
type SubnetEnv struct {
	Networks     []netip.Prefix // FLANNEL_NETWORK (comma separated)
	Subnet       netip.Prefix   // FLANNEL_SUBNET, masked to its network address; invalid if absent
	IPv6Networks []netip.Prefix // FLANNEL_IPV6_NETWORK (comma separated)
	IPv6Subnet   netip.Prefix   // FLANNEL_IPV6_SUBNET, masked; invalid if absent
	MTU          int            // FLANNEL_MTU
	IPMasq       bool           // FLANNEL_IPMASQ
}

// LoadSubnetEnv reads flanneld's subnet file at path.
func LoadSubnetEnv(path string) (*SubnetEnv, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: flanneld has not taken a lease on this node yet; "+
			"check that the kube-flannel pod of this node runs (kubectl -n kube-flannel get pods -o wide) and read its log", path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading flannel subnet file: %w", err)
	}
	defer f.Close()
	env, err := ParseSubnetEnv(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; check the log of this node's kube-flannel pod", path, err)
	}
	return env, nil
}

// ParseSubnetEnv parses the KEY=VALUE lines of a flannel subnet file. Unknown keys, blank
// lines and comments are ignored, as flannel's own CNI plugin does; known keys must parse,
// and every key the delegate configuration needs must be present.
func ParseSubnetEnv(r io.Reader) (*SubnetEnv, error) {
	var (
		env  SubnetEnv
		seen = map[string]bool{}
	)
	s := bufio.NewScanner(r)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want KEY=VALUE, got %q", n, line)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		var err error
		switch key {
		case "FLANNEL_NETWORK":
			env.Networks, err = parsePrefixList(val)
		case "FLANNEL_SUBNET":
			env.Subnet, err = parseSubnet(val)
		case "FLANNEL_IPV6_NETWORK":
			env.IPv6Networks, err = parsePrefixList(val)
		case "FLANNEL_IPV6_SUBNET":
			env.IPv6Subnet, err = parseSubnet(val)
		case "FLANNEL_MTU":
			var mtu uint64
			mtu, err = strconv.ParseUint(val, 10, 16)
			if err == nil && mtu < 68 { // the IPv4 minimum (RFC 791)
				err = fmt.Errorf("%d is below the IPv4 minimum of 68", mtu)
			}
			env.MTU = int(mtu)
		case "FLANNEL_IPMASQ":
			env.IPMasq, err = strconv.ParseBool(val)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %s=%q: %w", n, key, val, err)
		}
		seen[key] = true
	}
	if err := s.Err(); err != nil {
		return nil, err
	}

	var missing []string
	if !seen["FLANNEL_NETWORK"] && !seen["FLANNEL_IPV6_NETWORK"] {
		missing = append(missing, "FLANNEL_NETWORK (or FLANNEL_IPV6_NETWORK)")
	}
	if !seen["FLANNEL_SUBNET"] && !seen["FLANNEL_IPV6_SUBNET"] {
		missing = append(missing, "FLANNEL_SUBNET (or FLANNEL_IPV6_SUBNET)")
	}
	for _, k := range []string{"FLANNEL_MTU", "FLANNEL_IPMASQ"} {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	return &env, nil
}

// parsePrefixList parses comma separated CIDRs, dropping duplicates (flanneld may list a
// network twice) and masking each to its network address.
func parsePrefixList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if p = p.Masked(); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// parseSubnet parses a node subnet. flanneld writes it as the bridge's address with the
// subnet's length (10.244.1.1/24); host-local wants the network (10.244.1.0/24).
func parseSubnet(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}
