package cni

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSubnetEnv(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		name    string
		in      string
		want    *SubnetEnv
		wantErr string // substring; empty means success
	}{
		{
			name: "flanneld ipv4",
			in:   "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			want: &SubnetEnv{Networks: []netip.Prefix{pfx("10.244.0.0/16")}, Subnet: pfx("10.244.1.0/24"), MTU: 1450, IPMasq: true},
		},
		{
			name: "comments, blanks, spaces, unknown keys, ipmasq false",
			in:   "# written by flanneld\n\n FLANNEL_NETWORK = 10.244.0.0/16 \nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\nFLANNEL_FUTURE=x\n",
			want: &SubnetEnv{Networks: []netip.Prefix{pfx("10.244.0.0/16")}, Subnet: pfx("10.244.7.0/24"), MTU: 1500},
		},
		{
			name: "several networks, duplicate dropped",
			in:   "FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16,10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
			want: &SubnetEnv{Networks: []netip.Prefix{pfx("10.244.0.0/16"), pfx("10.245.0.0/16")}, Subnet: pfx("10.244.1.0/24"), MTU: 1450, IPMasq: true},
		},
		{
			name: "dual stack",
			in: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n" +
				"FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n",
			want: &SubnetEnv{
				Networks: []netip.Prefix{pfx("10.244.0.0/16")}, Subnet: pfx("10.244.1.0/24"),
				IPv6Networks: []netip.Prefix{pfx("fd00:10:244::/56")}, IPv6Subnet: pfx("fd00:10:244:1::/64"),
				MTU: 1430, IPMasq: true,
			},
		},
		{
			name: "ipv6 only",
			in:   "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n",
			want: &SubnetEnv{IPv6Networks: []netip.Prefix{pfx("fd00:10:244::/56")}, IPv6Subnet: pfx("fd00:10:244:1::/64"), MTU: 1430, IPMasq: true},
		},
		{name: "empty", in: "", wantErr: "missing FLANNEL_NETWORK (or FLANNEL_IPV6_NETWORK), FLANNEL_SUBNET (or FLANNEL_IPV6_SUBNET), FLANNEL_MTU, FLANNEL_IPMASQ"},
		{name: "missing subnet", in: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", wantErr: "missing FLANNEL_SUBNET"},
		{name: "missing mtu", in: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPMASQ=true\n", wantErr: "missing FLANNEL_MTU"},
		{name: "missing ipmasq", in: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n", wantErr: "missing FLANNEL_IPMASQ"},
		{name: "no equals sign", in: "FLANNEL_NETWORK\n", wantErr: "line 1: want KEY=VALUE"},
		{name: "bad network", in: "FLANNEL_NETWORK=10.244.0.0\n", wantErr: `line 1: FLANNEL_NETWORK="10.244.0.0"`},
		{name: "bad subnet", in: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.300/24\n", wantErr: "line 2: FLANNEL_SUBNET"},
		{name: "bad mtu", in: "FLANNEL_MTU=big\n", wantErr: `FLANNEL_MTU="big"`},
		{name: "tiny mtu", in: "FLANNEL_MTU=20\n", wantErr: "below the IPv4 minimum"},
		{name: "huge mtu", in: "FLANNEL_MTU=70000\n", wantErr: `FLANNEL_MTU="70000"`},
		{name: "bad ipmasq", in: "FLANNEL_IPMASQ=yes\n", wantErr: `FLANNEL_IPMASQ="yes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSubnetEnv(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestLoadSubnetEnvErrorsNameTheFix(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "subnet.env")
	if _, err := LoadSubnetEnv(missing); err == nil || !strings.Contains(err.Error(), "kube-flannel pod") {
		t.Errorf("missing file: error = %v, want a hint at the kube-flannel pod", err)
	}
	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("FLANNEL_MTU=1450\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSubnetEnv(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("incomplete file: error = %v, want it to name the file and what is missing", err)
	}
}
