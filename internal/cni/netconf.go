package cni

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
)

const (
	// DefaultSubnetFile is where flanneld writes its lease (the DaemonSet mounts /run/flannel).
	DefaultSubnetFile = "/run/flannel/subnet.env"
	// DefaultDataDir keeps each container's delegate configuration between ADD and DEL;
	// the same directory flannel's own CNI plugin uses, so either plugin can DEL the other's pods.
	DefaultDataDir = "/var/lib/cni/flannel"
	// DefaultDelegate is the plugin that does the real work unless "delegate" names another.
	DefaultDelegate = "bridge"
	// DefaultIPAM allocates pod addresses from the node's flannel subnet.
	DefaultIPAM = "host-local"
)

// NetConf is the configuration of a "flannel" plugin in a network configuration list:
// the keys flannel's own CNI plugin reads.
type NetConf struct {
	CNIVersion string `json:"cniVersion,omitempty"`
	Name       string `json:"name"`
	Type       string `json:"type"`

	// SubnetFile overrides DefaultSubnetFile.
	SubnetFile string `json:"subnetFile,omitempty"`
	// DataDir overrides DefaultDataDir.
	DataDir string `json:"dataDir,omitempty"`
	// Delegate holds keys passed through to the delegate plugin (e.g. hairpinMode,
	// isDefaultGateway); they override the defaults derived from the subnet file.
	Delegate map[string]any `json:"delegate,omitempty"`
	// IPAM is the base of the delegate's IPAM section; ranges and routes are added to it.
	IPAM map[string]any `json:"ipam,omitempty"`
	// RuntimeConfig is passed to the delegate as is (capability arguments).
	RuntimeConfig map[string]any `json:"runtimeConfig,omitempty"`
	// PrevResult is set by the runtime for CHECK (and for ADD of later plugins in a list).
	PrevResult map[string]any `json:"prevResult,omitempty"`
}

// ParseNetConf decodes the plugin's stdin and fills in defaults.
func ParseNetConf(data []byte) (*NetConf, error) {
	n := &NetConf{}
	if err := json.Unmarshal(data, n); err != nil {
		return nil, fmt.Errorf("parsing flannel network configuration: %w", err)
	}
	if n.SubnetFile == "" {
		n.SubnetFile = DefaultSubnetFile
	}
	if n.DataDir == "" {
		n.DataDir = DefaultDataDir
	}
	if t, ok := n.Delegate["type"]; ok {
		if s, isString := t.(string); !isString || s == "" {
			return nil, fmt.Errorf(`"delegate": "type" must be a plugin name (a string), got %v`, t)
		}
	}
	// flannel sets these itself; a configured value would silently be lost.
	for _, k := range []string{"name", "ipam"} {
		if _, ok := n.Delegate[k]; ok {
			return nil, fmt.Errorf(`"delegate" must not set %q: the flannel plugin sets it (put IPAM settings in the top-level "ipam")`, k)
		}
	}
	return n, nil
}

// delegateDefaults are the delegate keys derived from the subnet file; a key present in
// the configuration's "delegate" wins.
type delegateDefaults struct {
	Type string `json:"type"`
	// IPMasq: masquerade in the bridge plugin only if flanneld does not (--ip-masq).
	IPMasq bool `json:"ipMasq"`
	MTU    int  `json:"mtu"`
}

// bridgeDefaults apply when the delegate is the bridge plugin: the bridge carries the
// subnet's gateway address so pods can route through the node.
type bridgeDefaults struct {
	IsGateway bool `json:"isGateway"`
}

// delegateForced are set by the flannel plugin whatever "delegate" says.
type delegateForced struct {
	CNIVersion    string         `json:"cniVersion,omitempty"`
	Name          string         `json:"name"`
	IPAM          map[string]any `json:"ipam"`
	RuntimeConfig map[string]any `json:"runtimeConfig,omitempty"`
}

// IPAMRange is one host-local range.
type IPAMRange struct {
	Subnet string `json:"subnet"`
}

// ipamForced are the IPAM keys the subnet file determines.
type ipamForced struct {
	// Ranges has one range set per IP family.
	Ranges [][]IPAMRange `json:"ranges"`
	// Routes are the configured routes plus one per flannel network.
	Routes []types.Route `json:"routes"`
}

// DelegateConfig builds the configuration of the delegate plugin (bridge with host-local
// by default) from the flannel plugin's configuration and flanneld's subnet file, the way
// flannel's own CNI plugin does.
func DelegateConfig(n *NetConf, env *SubnetEnv) (map[string]any, error) {
	d := map[string]any{}
	for k, v := range n.Delegate {
		d[k] = v
	}
	if err := mergeJSON(d, delegateDefaults{Type: DefaultDelegate, IPMasq: !env.IPMasq, MTU: env.MTU}, false); err != nil {
		return nil, err
	}
	if d["type"] == "bridge" {
		if err := mergeJSON(d, bridgeDefaults{IsGateway: true}, false); err != nil {
			return nil, err
		}
	}

	ipam, err := delegateIPAM(n, env)
	if err != nil {
		return nil, err
	}
	forced := delegateForced{CNIVersion: n.CNIVersion, Name: n.Name, IPAM: ipam, RuntimeConfig: n.RuntimeConfig}
	if err := mergeJSON(d, forced, true); err != nil {
		return nil, err
	}
	return d, nil
}

func delegateIPAM(n *NetConf, env *SubnetEnv) (map[string]any, error) {
	ipam := map[string]any{"type": DefaultIPAM}
	for k, v := range n.IPAM {
		ipam[k] = v
	}

	var f ipamForced
	if r, ok := n.IPAM["routes"]; ok {
		// Round-trip through JSON to type the configured routes.
		b, err := json.Marshal(r)
		if err == nil {
			err = json.Unmarshal(b, &f.Routes)
		}
		if err != nil {
			return nil, fmt.Errorf(`"ipam": "routes" must be a list of {"dst": CIDR, "gw": IP}: %w`, err)
		}
	}
	f.Routes = append(f.Routes, routesTo(env.Networks)...)
	f.Routes = append(f.Routes, routesTo(env.IPv6Networks)...)
	for _, sn := range []netip.Prefix{env.Subnet, env.IPv6Subnet} {
		if sn.IsValid() {
			f.Ranges = append(f.Ranges, []IPAMRange{{Subnet: sn.String()}})
		}
	}
	if err := mergeJSON(ipam, f, true); err != nil {
		return nil, err
	}
	return ipam, nil
}

func routesTo(nets []netip.Prefix) []types.Route {
	var rs []types.Route
	for _, p := range nets {
		rs = append(rs, types.Route{Dst: net.IPNet{
			IP:   p.Addr().AsSlice(),
			Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
		}})
	}
	return rs
}

// mergeJSON sets the JSON fields of v into m: all of them if override, else only the
// keys m lacks.
func mergeJSON(m map[string]any, v any, override bool) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding delegate configuration: %w", err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		return fmt.Errorf("encoding delegate configuration: %w", err)
	}
	for k, val := range fields {
		if _, ok := m[k]; override || !ok {
			m[k] = val
		}
	}
	return nil
}
