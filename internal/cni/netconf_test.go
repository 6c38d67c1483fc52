package cni

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// delegateConf is the delegate configuration as the bridge (or another) plugin reads it.
type delegateConf struct {
	CNIVersion       string           `json:"cniVersion,omitempty"`
	Name             string           `json:"name"`
	Type             string           `json:"type"`
	IsGateway        *bool            `json:"isGateway,omitempty"`
	IsDefaultGateway bool             `json:"isDefaultGateway,omitempty"`
	HairpinMode      bool             `json:"hairpinMode,omitempty"`
	IPMasq           bool             `json:"ipMasq"`
	MTU              int              `json:"mtu"`
	Master           string           `json:"master,omitempty"`
	IPAM             delegateIPAMConf `json:"ipam"`
	RuntimeConfig    map[string]any   `json:"runtimeConfig,omitempty"`
}

type delegateIPAMConf struct {
	Type    string        `json:"type"`
	Ranges  [][]IPAMRange `json:"ranges"`
	Routes  []types.Route `json:"routes"`
	DataDir string        `json:"dataDir,omitempty"`
}

func route(cidr string) types.Route {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		panic(err)
	}
	return types.Route{Dst: *n}
}

func ptr[T any](v T) *T { return &v }

func TestDelegateConfig(t *testing.T) {
	pfx := netip.MustParsePrefix
	v4 := &SubnetEnv{Networks: []netip.Prefix{pfx("10.244.0.0/16")}, Subnet: pfx("10.244.1.0/24"), MTU: 1450, IPMasq: true}
	dual := &SubnetEnv{
		Networks: []netip.Prefix{pfx("10.244.0.0/16")}, Subnet: pfx("10.244.1.0/24"),
		IPv6Networks: []netip.Prefix{pfx("fd00:10:244::/56")}, IPv6Subnet: pfx("fd00:10:244:1::/64"),
		MTU: 1430,
	}
	tests := []struct {
		name    string
		conf    string
		env     *SubnetEnv
		want    delegateConf
		wantErr string
	}{
		{
			name: "kube-flannel cni-conf.json",
			conf: `{"cniVersion":"1.0.0","name":"cbr0","type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}}`,
			env:  v4,
			want: delegateConf{
				CNIVersion: "1.0.0", Name: "cbr0", Type: "bridge",
				IsGateway: ptr(true), IsDefaultGateway: true, HairpinMode: true,
				IPMasq: false, MTU: 1450,
				IPAM: delegateIPAMConf{
					Type:   "host-local",
					Ranges: [][]IPAMRange{{{Subnet: "10.244.1.0/24"}}},
					Routes: []types.Route{route("10.244.0.0/16")},
				},
			},
		},
		{
			name: "no delegate section, flanneld does not masquerade",
			conf: `{"cniVersion":"0.3.1","name":"cbr0","type":"flannel"}`,
			env:  &SubnetEnv{Networks: v4.Networks, Subnet: v4.Subnet, MTU: 1450, IPMasq: false},
			want: delegateConf{
				CNIVersion: "0.3.1", Name: "cbr0", Type: "bridge", IsGateway: ptr(true), IPMasq: true, MTU: 1450,
				IPAM: delegateIPAMConf{
					Type:   "host-local",
					Ranges: [][]IPAMRange{{{Subnet: "10.244.1.0/24"}}},
					Routes: []types.Route{route("10.244.0.0/16")},
				},
			},
		},
		{
			name: "delegate overrides defaults; ipam base and routes kept; runtimeConfig passed on",
			conf: `{"cniVersion":"1.0.0","name":"cbr0","type":"flannel",
				"delegate":{"isGateway":false,"ipMasq":true,"mtu":1400},
				"ipam":{"dataDir":"/tmp/ipam","routes":[{"dst":"10.96.0.0/12"}]},
				"runtimeConfig":{"portMappings":[]}}`,
			env: v4,
			want: delegateConf{
				CNIVersion: "1.0.0", Name: "cbr0", Type: "bridge", IsGateway: ptr(false), IPMasq: true, MTU: 1400,
				IPAM: delegateIPAMConf{
					Type:    "host-local",
					Ranges:  [][]IPAMRange{{{Subnet: "10.244.1.0/24"}}},
					Routes:  []types.Route{route("10.96.0.0/12"), route("10.244.0.0/16")},
					DataDir: "/tmp/ipam",
				},
				RuntimeConfig: map[string]any{"portMappings": []any{}},
			},
		},
		{
			name: "another delegate gets no isGateway",
			conf: `{"cniVersion":"1.0.0","name":"cbr0","type":"flannel","delegate":{"type":"ipvlan","master":"eth0"}}`,
			env:  v4,
			want: delegateConf{
				CNIVersion: "1.0.0", Name: "cbr0", Type: "ipvlan", Master: "eth0", MTU: 1450,
				IPAM: delegateIPAMConf{
					Type:   "host-local",
					Ranges: [][]IPAMRange{{{Subnet: "10.244.1.0/24"}}},
					Routes: []types.Route{route("10.244.0.0/16")},
				},
			},
		},
		{
			name: "dual stack",
			conf: `{"cniVersion":"1.0.0","name":"cbr0","type":"flannel"}`,
			env:  dual,
			want: delegateConf{
				CNIVersion: "1.0.0", Name: "cbr0", Type: "bridge", IsGateway: ptr(true), IPMasq: true, MTU: 1430,
				IPAM: delegateIPAMConf{
					Type:   "host-local",
					Ranges: [][]IPAMRange{{{Subnet: "10.244.1.0/24"}}, {{Subnet: "fd00:10:244:1::/64"}}},
					Routes: []types.Route{route("10.244.0.0/16"), route("fd00:10:244::/56")},
				},
			},
		},
		{name: "delegate sets name", conf: `{"name":"cbr0","delegate":{"name":"x"}}`, env: v4, wantErr: `must not set "name"`},
		{name: "delegate sets ipam", conf: `{"name":"cbr0","delegate":{"ipam":{}}}`, env: v4, wantErr: `must not set "ipam"`},
		{name: "delegate type not a string", conf: `{"name":"cbr0","delegate":{"type":1}}`, env: v4, wantErr: `"type" must be a plugin name`},
		{name: "bad ipam routes", conf: `{"name":"cbr0","ipam":{"routes":"10.96.0.0/12"}}`, env: v4, wantErr: `"routes" must be a list`},
		{name: "not json", conf: `{`, env: v4, wantErr: "parsing flannel network configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := delegateFor(tt.conf, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Compared as JSON: net.IP has two equal forms for an IPv4 address.
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(tt.want)
			if !bytes.Equal(g, w) {
				t.Errorf("got  %s\nwant %s", g, w)
			}
		})
	}
}

// delegateFor builds the delegate configuration and decodes it strictly, so that a stray
// key fails the test.
func delegateFor(conf string, env *SubnetEnv) (delegateConf, error) {
	var out delegateConf
	n, err := ParseNetConf([]byte(conf))
	if err != nil {
		return out, err
	}
	d, err := DelegateConfig(n, env)
	if err != nil {
		return out, err
	}
	b, err := json.Marshal(d)
	if err != nil {
		return out, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return out, dec.Decode(&out)
}

func TestParseNetConfDefaults(t *testing.T) {
	n, err := ParseNetConf([]byte(`{"cniVersion":"1.0.0","name":"cbr0","type":"flannel"}`))
	if err != nil {
		t.Fatal(err)
	}
	if n.SubnetFile != DefaultSubnetFile || n.DataDir != DefaultDataDir {
		t.Errorf("subnetFile, dataDir = %q, %q; want %q, %q", n.SubnetFile, n.DataDir, DefaultSubnetFile, DefaultDataDir)
	}
}
