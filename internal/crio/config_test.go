package crio

import (
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
)

func TestConfigByCgroupMode(t *testing.T) {
	for _, tc := range []struct {
		mode      cgroups.Mode
		dropInfra bool
	}{
		{cgroups.V1Delegated, false}, // cri-o would mkdir its own cgroup at the v1 root
		{cgroups.None, false},
		{cgroups.V2Delegated, true},
	} {
		n := &config.Node{Cgroup: tc.mode, PauseImage: "registry.local/k8s-p10/pause:3.10.1"}
		b, err := New(n, Dirs{State: "/s", Run: "/r"}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var back Config
		if err := toml.Unmarshal(b, &back); err != nil {
			t.Fatalf("crio.conf does not parse back: %v\n%s", err, b)
		}
		rt := back.Crio.Runtime
		if rt.DropInfraCtr != tc.dropInfra || rt.CgroupManager != "cgroupfs" || rt.ConmonCgroup != "pod" || rt.ApparmorProfile != "unconfined" {
			t.Errorf("%s: runtime %+v", tc.mode, rt)
		}
		if back.Crio.API.Listen != "/r/crio.sock" || back.Crio.Image.PauseImage != n.PauseImage {
			t.Errorf("%s: listen %q pause %q", tc.mode, back.Crio.API.Listen, back.Crio.Image.PauseImage)
		}
		if !strings.Contains(string(b), "[crio.runtime.runtimes.runc]") {
			t.Errorf("no runc runtime table:\n%s", b)
		}
	}
}

func TestRegistriesInsecureOnlyForGiven(t *testing.T) {
	b, err := marshalTOML(NewRegistries([]string{"registry.local"}))
	if err != nil {
		t.Fatal(err)
	}
	var r Registries
	if err := toml.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Registry) != 1 || r.Registry[0].Prefix != "registry.local" || r.Registry[0].Location != "registry.local:80" || !r.Registry[0].Insecure {
		t.Errorf("registries: %+v", r)
	}
}

// cri-o pulls registry.local's images from registry.local:80 (registries.conf): the signatures
// must be looked up there too, or every signed image is refused as unsigned.
func TestSignatureHosts(t *testing.T) {
	n := &config.Node{Registry: "registry.local/k8s-p10", Insecure: []string{"registry.local"}}
	if got := SignatureHosts(n); !slices.Equal(got, []string{"registry.local", "registry.local:80"}) {
		t.Errorf("SignatureHosts = %q, want registry.local and registry.local:80", got)
	}
	n = &config.Node{Registry: "registry.example.com:5000/k8s"}
	if got := SignatureHosts(n); !slices.Equal(got, []string{"registry.example.com:5000"}) {
		t.Errorf("SignatureHosts = %q, want registry.example.com:5000", got)
	}
}
