package paths

import (
	"path/filepath"
	"testing"
)

func TestOnHost(t *testing.T) {
	for in, want := range map[string]string{
		"/var/lib/kubelet/pki/kubelet-client-current.pem": filepath.Join(State, "kubelet/pki/kubelet-client-current.pem"),
		"/var/lib/kubelet":           filepath.Join(State, "kubelet"),
		"/var/lib/kubeletx/a":        "/var/lib/kubeletx/a",
		"/etc/kubernetes/pki/ca.crt": "/etc/kubernetes/pki/ca.crt",
	} {
		if got := OnHost(in); got != want {
			t.Errorf("OnHost(%s) = %s, want %s", in, got, want)
		}
	}
}
