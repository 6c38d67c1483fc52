package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func certPEM(t *testing.T, cn string, notAfter time.Time) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// The pki certificates and the kubeconfigs' embedded client certificates, soonest first; only
// those inside the window are reported.
func TestExpiry(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	os.MkdirAll(filepath.Join(dir, "pki", "etcd"), 0o755)
	os.WriteFile(filepath.Join(dir, "pki", "apiserver.crt"), certPEM(t, "kube-apiserver", now.Add(300*24*time.Hour)), 0o644)
	os.WriteFile(filepath.Join(dir, "pki", "etcd", "server.crt"), certPEM(t, "etcd", now.Add(10*24*time.Hour)), 0o644)
	cfg := clientcmdapi.NewConfig()
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM(t, "kubernetes-admin", now.Add(20*24*time.Hour))}
	cfg.AuthInfos["kubelet"] = &clientcmdapi.AuthInfo{ClientCertificate: "/var/lib/kubelet/pki/kubelet-client-current.pem"}
	if err := clientcmd.WriteToFile(*cfg, filepath.Join(dir, "admin.conf")); err != nil {
		t.Fatal(err)
	}
	cs, err := Expiry(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 || cs[0].Subject != "etcd" || cs[1].Subject != "kubernetes-admin" || cs[2].Subject != "kube-apiserver" {
		t.Fatalf("Expiry = %+v, want etcd, kubernetes-admin, kube-apiserver", cs)
	}
	soon := Within(cs, now, 30*24*time.Hour)
	if len(soon) != 2 {
		t.Errorf("Within 30 days: %+v, want the etcd and admin certificates", soon)
	}
}
