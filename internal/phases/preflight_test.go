package phases

import (
	"strings"
	"testing"
	"time"
)

// Each bad flag is named with its fix; good flags pass. Nothing here touches the host.
func TestCheckFlags(t *testing.T) {
	hash := "sha256:" + strings.Repeat("ab", 32)
	good := Options{BindPort: 6443, CgroupMode: "auto", Endpoint: "192.0.2.1:6443", Token: "abcdef.0123456789abcdef",
		CACertHashes: []string{hash}, PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", Timeout: 10 * time.Minute}
	for _, tc := range []struct {
		name, flow string
		change     func(*Options)
		want       string // "" = no error
	}{
		{"good join", FlowJoin, func(o *Options) {}, ""},
		{"good control-plane join", FlowJoin, func(o *Options) { o.ControlPlane = true; o.CertificateKey = strings.Repeat("0", 64) }, ""},
		{"good init", FlowInit, func(o *Options) {}, ""},
		{"no endpoint", FlowJoin, func(o *Options) { o.Endpoint = "" }, "endpoint is missing"},
		{"endpoint without port", FlowJoin, func(o *Options) { o.Endpoint = "192.0.2.1" }, "HOST:PORT"},
		{"bad token", FlowJoin, func(o *Options) { o.Token = "nope" }, "--token"},
		{"no CA hash", FlowJoin, func(o *Options) { o.CACertHashes = nil }, "--discovery-token-ca-cert-hash is missing"},
		{"bad CA hash", FlowJoin, func(o *Options) { o.CACertHashes = []string{"md5:00"} }, "sha256: and 64 hex"},
		{"control plane without key", FlowJoin, func(o *Options) { o.ControlPlane = true }, "--control-plane needs --certificate-key"},
		{"key without control plane", FlowJoin, func(o *Options) { o.CertificateKey = strings.Repeat("0", 64) }, "for --control-plane only"},
		{"short key", FlowJoin, func(o *Options) { o.ControlPlane = true; o.CertificateKey = "abc" }, "64 hex digits"},
		{"bad port", FlowInit, func(o *Options) { o.BindPort = 70000 }, "--apiserver-bind-port"},
		{"no timeout", FlowInit, func(o *Options) { o.Timeout = 0 }, "--timeout 0s"},
		{"bad cgroup mode", FlowInit, func(o *Options) { o.CgroupMode = "v3" }, "--cgroup-mode"},
		{"small pod network", FlowInit, func(o *Options) { o.PodCIDR = "10.244.0.0/25" }, "too small"},
		{"bad service network", FlowInit, func(o *Options) { o.ServiceCIDR = "x" }, "--service-cidr"},
		{"other kubernetes", FlowInit, func(o *Options) { o.KubernetesVersion = "v1.20.0" }, "--kubernetes-version"},
		{"bad node name", FlowJoin, func(o *Options) { o.NodeName = "Bad_Name" }, "--node-name"},
		{"advertise address not here", FlowJoin, func(o *Options) { o.AdvertiseAddress = "203.0.113.254" }, "not an address of this host"},
	} {
		o := good
		tc.change(&o)
		d := &Data{Flow: tc.flow, O: o, bootstrap: bootstraps[tc.flow]}
		err := d.checkFlags()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: want an error with %q, got %v", tc.name, tc.want, err)
		}
	}
}
