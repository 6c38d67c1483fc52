package kubeadm

import (
	"strings"
	"testing"
)

func TestOutputFilter(t *testing.T) {
	var b strings.Builder
	f := NewOutputFilter(&b)
	in := "[certs] Generating \"ca\"\n" +
		"W1201 kubelet.go:43] [kubelet-start] WARNING: unable to start the kubelet service: [failed to reload systemd]\n" +
		"[preflight] Use 'kubeadm init phase upload-certs --upload-certs' to make a key\n" +
		"[addons] Applied essential addon: kube-proxy\n" +
		"Your Kubernetes control-plane has initialized successfully!\n" +
		"kubeadm join 192.0.2.1:6443 --token x\n"
	// In pieces, as a pipe delivers it.
	for _, part := range []string{in[:10], in[10:100], in[100:]} {
		if _, err := f.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	f.Flush()
	got := b.String()
	want := "[certs] Generating \"ca\"\n[preflight] Use 'u7s init phase upload-certs --upload-certs' to make a key\n[addons] Applied essential addon: kube-proxy\n"
	if got != want {
		t.Errorf("filtered:\n%s\nwant:\n%s", got, want)
	}
}

func TestRewriteCommands(t *testing.T) {
	got := RewriteCommands("kubeadm join 10.0.0.1:6443 --token a.b --discovery-token-ca-cert-hash sha256:c\n")
	if got != "u7s join 10.0.0.1:6443 --token a.b --discovery-token-ca-cert-hash sha256:c\n" {
		t.Errorf("got %q", got)
	}
	if got := RewriteCommands("kubeadm init phase upload-config kubeadm"); got != "kubeadm init phase upload-config kubeadm" {
		t.Errorf("a kubeadm phase u7s has not was rewritten: %q", got)
	}
}

func TestValidToken(t *testing.T) {
	for tok, ok := range map[string]bool{"abcdef.0123456789abcdef": true, "abcdef0123456789abcdef": false, "ABCDEF.0123456789abcdef": false, "abc.def": false} {
		if err := ValidToken(tok); (err == nil) != ok {
			t.Errorf("ValidToken(%q) = %v", tok, err)
		}
	}
}
