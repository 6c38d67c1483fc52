package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestImagesBuildCommand(t *testing.T) {
	bin := t.TempDir()
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--bin-dir", bin, "--registry", "registry.local/k8s-p10"}, "nothing to do"},
		{[]string{"--bin-dir", bin, "--registry", "registry.local/k8s-p10", "--push", "--only", "pause,etcd"}, "/etcd, " + bin + "/pause: build them with `make components`"},
		{[]string{"--bin-dir", bin, "--registry", "registry.local/k8s-p10", "--oci-dir", t.TempDir(), "--only", "kubelet"}, `unknown image "kubelet"`},
		{[]string{"extra"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Setenv("U7S_REGISTRY", "")
		cmd := newImagesBuildCommand()
		cmd.SetArgs(tt.args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%v: got %v, want %q", tt.args, err, tt.wantErr)
		}
	}
}
