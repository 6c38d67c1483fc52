package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	cniversion "github.com/containernetworking/cni/pkg/version"
)

// fakeExec stands in for the delegate plugins: it records each call and answers ADD with
// a canned result.
type fakeExec struct {
	calls []fakeCall
	fail  error
}

type fakeCall struct {
	command, plugin string
	conf            map[string]any
}

func (f *fakeExec) ExecPlugin(_ context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	c := fakeCall{plugin: filepath.Base(pluginPath)}
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "CNI_COMMAND="); ok {
			c.command = v
		}
	}
	if err := json.Unmarshal(stdin, &c.conf); err != nil {
		return nil, err
	}
	f.calls = append(f.calls, c)
	if f.fail != nil {
		return nil, f.fail
	}
	if c.command == "ADD" {
		return []byte(fmt.Sprintf(`{"cniVersion":%q,"ips":[{"address":"10.244.1.2/24","gateway":"10.244.1.1"}]}`, c.conf["cniVersion"])), nil
	}
	return nil, nil
}

func (f *fakeExec) FindInPath(plugin string, _ []string) (string, error) {
	return "/fake/" + plugin, nil
}

func (f *fakeExec) Decode(b []byte) (cniversion.PluginInfo, error) {
	return (&cniversion.PluginDecoder{}).Decode(b)
}

func writeSubnetEnv(t *testing.T, path, subnet string) {
	t.Helper()
	env := "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=" + subnet + "\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	if err := os.WriteFile(path, []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPluginLifecycle(t *testing.T) {
	dir := t.TempDir()
	subnetFile := filepath.Join(dir, "subnet.env")
	dataDir := filepath.Join(dir, "data")
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"cbr0","type":"flannel","subnetFile":%q,"dataDir":%q,
		"delegate":{"hairpinMode":true,"isDefaultGateway":true}}`, subnetFile, dataDir)
	args := &skel.CmdArgs{ContainerID: "c1", Netns: "/var/run/netns/x", IfName: "eth0", StdinData: []byte(conf)}
	fx := &fakeExec{}
	var out bytes.Buffer
	p := &plugin{stdout: &out, exec: fx}

	// Before flanneld has a lease: STATUS says not available, ADD fails.
	err := p.status(args)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != errPluginNotAvailable {
		t.Fatalf("STATUS without subnet.env = %v, want code %d", err, errPluginNotAvailable)
	}
	if err := p.add(args); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("ADD without subnet.env = %v, want an error about the missing file", err)
	}

	writeSubnetEnv(t, subnetFile, "10.244.1.1/24")
	if err := p.status(args); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	if err := p.add(args); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	var res struct {
		CNIVersion string `json:"cniVersion"`
		IPs        []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("stdout is not the CNI result: %v\n%s", err, out.String())
	}
	if res.CNIVersion != "1.1.0" || len(res.IPs) != 1 || res.IPs[0].Address != "10.244.1.2/24" {
		t.Errorf("result = %s", out.String())
	}
	add := fx.calls[len(fx.calls)-1]
	if add.command != "ADD" || add.plugin != "bridge" || add.conf["name"] != "cbr0" {
		t.Errorf("delegate call = %+v, want ADD of bridge for cbr0", add)
	}
	saved, err := os.ReadFile(filepath.Join(dataDir, "c1"))
	if err != nil {
		t.Fatalf("ADD saved no state: %v", err)
	}

	// CHECK hands the runtime's prevResult to the delegate.
	checkArgs := *args
	checkArgs.StdinData = []byte(strings.TrimSuffix(conf, "}") + `,"prevResult":` + out.String() + `}`)
	if err := p.check(&checkArgs); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if c := fx.calls[len(fx.calls)-1]; c.command != "CHECK" || c.conf["prevResult"] == nil {
		t.Errorf("CHECK delegate call = %+v, want CHECK with prevResult", c)
	}

	// flanneld leased another subnet: CHECK reports the stale address.
	writeSubnetEnv(t, subnetFile, "10.244.9.1/24")
	if err := p.check(&checkArgs); err == nil || !strings.Contains(err.Error(), "recreate the pod") {
		t.Errorf("CHECK after lease change = %v, want a stale-address error", err)
	}

	// DEL works from the saved state even with subnet.env gone, and only once.
	if err := os.Remove(subnetFile); err != nil {
		t.Fatal(err)
	}
	if err := p.del(args); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	del := fx.calls[len(fx.calls)-1]
	delConf, _ := json.Marshal(del.conf)
	var savedConf map[string]any
	_ = json.Unmarshal(saved, &savedConf)
	want, _ := json.Marshal(savedConf)
	if del.command != "DEL" || !bytes.Equal(delConf, want) {
		t.Errorf("DEL delegate call = %s %s, want DEL with the saved config %s", del.command, delConf, want)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "c1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state survived DEL: %v", err)
	}
	n := len(fx.calls)
	if err := p.del(args); err != nil {
		t.Errorf("second DEL: %v", err)
	}
	if len(fx.calls) != n {
		t.Errorf("second DEL called the delegate again")
	}
	if err := p.check(args); !errors.As(err, &cniErr) || cniErr.Code != types.ErrUnknownContainer {
		t.Errorf("CHECK after DEL = %v, want unknown container", err)
	}
}

func TestPluginDelegateFailure(t *testing.T) {
	dir := t.TempDir()
	subnetFile := filepath.Join(dir, "subnet.env")
	writeSubnetEnv(t, subnetFile, "10.244.1.1/24")
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"cbr0","type":"flannel","subnetFile":%q,"dataDir":%q}`, subnetFile, dir)
	args := &skel.CmdArgs{ContainerID: "c2", IfName: "eth0", StdinData: []byte(conf)}
	fx := &fakeExec{fail: errors.New("boom")}
	var out bytes.Buffer
	p := &plugin{stdout: &out, exec: fx}

	if err := p.add(args); err == nil || !strings.Contains(err.Error(), "delegate plugin bridge: ADD: boom") {
		t.Fatalf("ADD = %v, want the delegate's error", err)
	}
	if out.Len() != 0 {
		t.Errorf("failed ADD wrote to stdout: %q", out.String())
	}
	// The state stays so that the runtime's DEL can clean up; a failing DEL keeps it for a retry.
	if err := p.del(args); err == nil {
		t.Fatal("DEL with a failing delegate succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "c2")); err != nil {
		t.Errorf("state lost after a failed DEL: %v", err)
	}
	fx.fail = nil
	if err := p.del(args); err != nil {
		t.Fatalf("DEL retry: %v", err)
	}
}
