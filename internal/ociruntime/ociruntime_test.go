package ociruntime

import (
	"encoding/json"
	"testing"
)

func TestClamp(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		floor    int
		changed  bool
		want     int64
		has      bool // the result has an oomScoreAdj
	}{
		{"config below floor", `{"ociVersion":"1.2.1","process":{"oomScoreAdj":-998,"user":{"uid":0}},"big":12345678901234567890}`, 0, true, 0, true},
		{"config above floor", `{"process":{"oomScoreAdj":1000}}`, -999, false, 1000, true},
		{"process.json", `{"oomScoreAdj":-997,"args":["sh"]}`, -500, true, -500, true},
		{"no value", `{"process":{"args":["sh"]}}`, 0, false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := Adjust([]byte(tc.in), Limits{OOMScoreAdjFloor: tc.floor, Hugetlb: true})
			if err != nil || changed != tc.changed {
				t.Fatalf("changed %v err %v", changed, err)
			}
			var doc map[string]any
			d := json.NewDecoder(bytesReader(out))
			d.UseNumber()
			if err := d.Decode(&doc); err != nil {
				t.Fatal(err)
			}
			if big, ok := doc["big"]; ok && big.(json.Number).String() != "12345678901234567890" {
				t.Errorf("a large number changed: %v", big)
			}
			target := doc
			if p, ok := doc["process"].(map[string]any); ok {
				target = p
			}
			n, has := target["oomScoreAdj"].(json.Number)
			if has != tc.has {
				t.Fatalf("oomScoreAdj present %v, want %v: %s", has, tc.has, out)
			}
			if v, _ := n.Int64(); has && v != tc.want {
				t.Errorf("oomScoreAdj %d, want %d", v, tc.want)
			}
		})
	}
}

func TestSpecFile(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--root", "/run/runc", "create", "--bundle", "/b", "id"}, "/b/config.json"},
		{[]string{"--systemd-cgroup", "create", "--bundle=/b2", "id"}, "/b2/config.json"},
		{[]string{"exec", "--process", "/tmp/p.json", "id"}, "/tmp/p.json"},
		{[]string{"--root", "/r", "state", "id"}, ""},
		{[]string{"run", "id"}, "config.json"},
	} {
		if got := specFile(tc.args); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestDropHugetlbWithoutController(t *testing.T) {
	in := `{"process":{"oomScoreAdj":5},"linux":{"resources":{"hugepageLimits":[{"pageSize":"2MB","limit":0}],"memory":{"limit":67108864}}}}`
	out, changed, err := Adjust([]byte(in), Limits{Hugetlb: false})
	if err != nil || !changed {
		t.Fatalf("changed %v err %v", changed, err)
	}
	if got := string(out); got != `{"linux":{"resources":{"memory":{"limit":67108864}}},"process":{"oomScoreAdj":5}}` {
		t.Errorf("got %s", got)
	}
	if _, changed, _ := Adjust([]byte(in), Limits{Hugetlb: true}); changed {
		t.Errorf("changed a spec the namespace can apply")
	}
}
