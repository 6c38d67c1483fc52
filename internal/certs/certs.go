// Package certs reads the expiry of a node's certificates: the control plane's in
// /etc/kubernetes/pki and the client certificates embedded in its kubeconfig files. Renewal is
// kubeadm's (u7s certs renew runs it inside the node).
package certs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// Cert is one certificate and when it expires.
type Cert struct {
	Path     string
	Subject  string
	NotAfter time.Time
}

// Expiry lists the certificates under kubernetesDir (pki/**/*.crt and the client
// certificates of its *.conf kubeconfigs), soonest first.
func Expiry(kubernetesDir string) ([]Cert, error) {
	var out []Cert
	err := filepath.WalkDir(filepath.Join(kubernetesDir, "pki"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".crt") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		c, err := parse(b)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, Cert{Path: p, Subject: c.Subject.CommonName, NotAfter: c.NotAfter})
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	confs, _ := filepath.Glob(filepath.Join(kubernetesDir, "*.conf"))
	for _, f := range confs {
		cfg, err := clientcmd.LoadFromFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for name, a := range cfg.AuthInfos {
			if len(a.ClientCertificateData) == 0 {
				continue // a file path (the kubelet's rotating certificate): rotated by the kubelet
			}
			c, err := parse(a.ClientCertificateData)
			if err != nil {
				return nil, fmt.Errorf("%s, user %s: %w", f, name, err)
			}
			out = append(out, Cert{Path: f, Subject: c.Subject.CommonName, NotAfter: c.NotAfter})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NotAfter.Before(out[j].NotAfter) })
	return out, nil
}

// Within is the certificates of cs that expire before now+d.
func Within(cs []Cert, now time.Time, d time.Duration) []Cert {
	var soon []Cert
	for _, c := range cs {
		if c.NotAfter.Before(now.Add(d)) {
			soon = append(soon, c)
		}
	}
	return soon
}

func parse(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}
