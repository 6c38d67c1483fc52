//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// etcdDir is the node's etcd data directory on the host.
const etcdDir = "/var/lib/u7s-admin/.local/share/u7s/etcd"

// testSecurity checks the defaults a fresh node has (issue 10), on the node TestNode made.
func testSecurity(t *testing.T, nodeName, nodeIP string) {
	t.Run("CIS benchmark: no check fails", func(t *testing.T) {
		out, err := run(t, u7s, "check", "cis")
		t.Logf("u7s check cis:\n%s", out)
		if err != nil {
			t.Errorf("u7s check cis: %v", err)
		}
		// 5.3.1 (the CNI enforces NetworkPolicy) is u7s's own audit: the report lists every FAIL
		// and WARN, so a 5.3.1 in it means the check did not pass.
		if strings.Contains(out, " 5.3.1 ") {
			t.Errorf("CIS 5.3.1 (NetworkPolicy enforced) did not pass")
		}
		if m := regexp.MustCompile(`(?m)^.*\b(\d+) checks?\b.*$`).FindString(out); m != "" {
			t.Logf("FIGURE cis %s", strings.TrimSpace(m))
		}
	})

	t.Run("Secrets encrypted at rest and audited without their values", func(t *testing.T) {
		value := fmt.Sprintf("u7s-e2e-secret-%d", time.Now().UnixNano())
		kubectl(t, "create", "secret", "generic", "enc", "--from-literal=v="+value)
		if got := kubectl(t, "get", "secret", "enc", "-o", "jsonpath={.data.v}"); got != base64.StdEncoding.EncodeToString([]byte(value)) {
			t.Errorf("the API serves %q, want the value written", got)
		}
		eventually(t, "etcd holds the Secret sealed (k8s:enc:secretbox)", 30*time.Second, func() error {
			if out, _ := run(t, "grep", "-rl", "k8s:enc:secretbox:v1:u7s-1", etcdDir); out == "" {
				return fmt.Errorf("no sealed value in %s", etcdDir)
			}
			return nil
		})
		if out, _ := run(t, "grep", "-rl", value, etcdDir, "/var/log/u7s"); out != "" {
			t.Errorf("the Secret's value is in plain text in: %s", out)
		}
		eventually(t, "the audit log records the Secret's creation", 30*time.Second, func() error {
			b, err := os.ReadFile("/var/log/u7s/audit/audit.log")
			if err != nil {
				return err
			}
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, `"verb":"create"`) && strings.Contains(l, `"resource":"secrets"`) &&
					strings.Contains(l, `"name":"enc"`) && strings.Contains(l, `"username":"kubernetes-admin"`) {
					return nil
				}
			}
			return fmt.Errorf("no create of secrets/enc by kubernetes-admin")
		})
		kubectl(t, "delete", "secret", "enc")
	})

	t.Run("Pod Security refuses a privileged pod; seccomp RuntimeDefault", func(t *testing.T) {
		out, err := run(t, "kubectl", "run", "priv", "--image="+busybox,
			`--overrides={"spec":{"containers":[{"name":"priv","image":"`+busybox+`","command":["sleep","60"],"securityContext":{"privileged":true}}]}}`)
		if err == nil || !strings.Contains(out, `violates PodSecurity "baseline:latest": privileged`) {
			t.Errorf("a privileged pod in default: want Pod Security's refusal, got %v: %s", err, out)
			run(t, "kubectl", "delete", "pod", "priv", "--now")
		}
		apply(t, `apiVersion: v1
kind: Pod
metadata: {name: sc}
spec:
  containers:
  - {name: c, image: `+busybox+`, command: [sleep, "3600"]}
`)
		kubectl(t, "wait", "--for=condition=Ready", "pod/sc", "--timeout=120s")
		status := kubectl(t, "exec", "sc", "--", "cat", "/proc/1/status")
		if !regexp.MustCompile(`(?m)^Seccomp:\s+2$`).MatchString(status) {
			t.Errorf("the pod's process is not in seccomp filter mode:\n%s", status)
		}
		kubectl(t, "delete", "pod", "sc", "--now")
	})

	t.Run("anonymous requests refused by the API server and the kubelet", func(t *testing.T) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		for url, want := range map[string]int{
			"https://" + nodeIP + ":6443/api/v1/namespaces":                                     401,
			"https://" + nodeIP + ":6443/api/v1/namespaces/kube-system/secrets":                 401,
			"https://" + nodeIP + ":6443/livez":                                                 200,
			"https://" + nodeIP + ":6443/api/v1/namespaces/kube-public/configmaps/cluster-info": 200,
			"https://" + nodeIP + ":10250/pods":                                                 401,
			"https://" + nodeIP + ":10250/runningpods/":                                         401,
		} {
			resp, err := c.Get(url)
			if err != nil {
				t.Errorf("GET %s: %v", url, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("anonymous GET %s: %d, want %d", url, resp.StatusCode, want)
			}
		}
	})

	t.Run("kubelet serving certificates from the cluster CA; a forged CSR stays pending", func(t *testing.T) {
		ca, err := os.ReadFile("/etc/kubernetes/pki/ca.crt")
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		eventually(t, "the kubelet serves a certificate the cluster CA signed for "+nodeIP, 60*time.Second, func() error {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", nodeIP+":10250", &tls.Config{RootCAs: pool, ServerName: nodeIP})
			if err != nil {
				return err
			}
			return conn.Close()
		})
		csrs := kubectl(t, "get", "csr", "-o", `jsonpath={range .items[?(@.spec.signerName=="kubernetes.io/kubelet-serving")]}{.spec.username} {.status.conditions[*].type}{"\n"}{end}`)
		if !strings.Contains(csrs, "system:node:"+nodeName+" Approved") {
			t.Errorf("no approved kubelet-serving CSR of system:node:%s:\n%s", nodeName, csrs)
		}
		// The admin asks for a serving certificate in the node's name, with a foreign address.
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:     pkix.Name{CommonName: "system:node:" + nodeName, Organization: []string{"system:nodes"}},
			IPAddresses: []net.IP{net.ParseIP(nodeIP), net.ParseIP("203.0.113.9")},
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		req := base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
		apply(t, `apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {name: forged-serving}
spec:
  signerName: kubernetes.io/kubelet-serving
  usages: [digital signature, server auth]
  request: `+req+"\n")
		time.Sleep(10 * time.Second)
		if cond := kubectl(t, "get", "csr", "forged-serving", "-o", "jsonpath={.status.conditions[*].type}"); cond != "" {
			t.Errorf("the forged CSR got %q, want it left pending", cond)
		}
		kubectl(t, "delete", "csr", "forged-serving")
	})
}

// testSignedImages checks the node's containers policy (init --image-signing-key): a pod of an
// unsigned image, of an image signed with another key, or from another registry does not run.
func testSignedImages(t *testing.T) {
	t.Run("only images signed with the site's key run", func(t *testing.T) {
		// An unsigned copy of a signed image, and one signed with another key pair.
		must(t, "skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--remove-signatures",
			"docker://"+busybox, "docker://registry.local/e2e-unsigned/busybox:1.35.0")
		must(t, "skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--remove-signatures",
			"docker://"+busybox, "docker://registry.local/e2e-otherkey/busybox:1.35.0")
		other := t.TempDir()
		must(t, u7s, "images", "keygen", "--dir", other)
		must(t, u7s, "images", "sign", "--sign-key", filepath.Join(other, "u7s-signing.key"), "registry.local/e2e-otherkey/busybox:1.35.0")

		for name, c := range map[string]struct{ image, event string }{
			"signed":   {busybox, ""},
			"unsigned": {"registry.local/e2e-unsigned/busybox:1.35.0", "A signature was required, but no signature exists"},
			"otherkey": {"registry.local/e2e-otherkey/busybox:1.35.0", "SignatureValidationFailed"},
			// Refused before the policy is asked (the name does not resolve on the node): it
			// never runs; that the policy refuses every other registry is the signing unit test's.
			"elsewhere": {"quay.io/library/busybox:1.35.0", "Failed to pull image"},
		} {
			pod := "img-" + name
			kubectl(t, "run", pod, "--image="+c.image, "--restart=Never", "--", "sleep", "600")
			if c.event == "" {
				kubectl(t, "wait", "--for=condition=Ready", "pod/"+pod, "--timeout=120s")
			} else {
				eventually(t, pod+" refused: "+c.event, 60*time.Second, func() error {
					ev := kubectl(t, "get", "events", "--field-selector", "involvedObject.name="+pod, "-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}")
					if !strings.Contains(ev, c.event) {
						return fmt.Errorf("events: %s", ev)
					}
					for _, l := range strings.Split(ev, "\n") {
						if strings.Contains(l, c.event) {
							t.Logf("%s: %s", pod, l)
							break
						}
					}
					return nil
				})
				if phase := kubectl(t, "get", "pod", pod, "-o", "jsonpath={.status.phase}"); phase != "Pending" {
					t.Errorf("%s (%s) is %s, want Pending", pod, c.image, phase)
				}
			}
			kubectl(t, "delete", "pod", pod, "--now")
		}
	})
}

// signingKey is the site's public key that `make images` signed the images with.
func signingKey(t *testing.T) string {
	t.Helper()
	k := filepath.Join(repoRoot(t), "_output/signing/u7s-signing.pub")
	if _, err := os.Stat(k); err != nil {
		t.Fatalf("no signing key (make images makes it): %v", err)
	}
	return k
}

// nodeName and nodeIP are the single node's, as the cluster has it.
func nodeName(t *testing.T) string {
	t.Helper()
	return kubectl(t, "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
}

func nodeIP(t *testing.T) string {
	t.Helper()
	return kubectl(t, "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
}
