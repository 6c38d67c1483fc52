package csrapprover

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// request returns a PEM CSR signed by a fresh ECDSA key: by default the one kubelet n1 sends.
func request(t *testing.T, edit func(*x509.CertificateRequest)) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: "system:node:n1", Organization: []string{"system:nodes"}},
		DNSNames:    []string{"n1"},
		IPAddresses: []net.IP{net.ParseIP("10.0.0.11"), net.ParseIP("2001:db8::11")},
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func newCSR(name string, req []byte) *certificatesv1.CertificateSigningRequest {
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    req,
			SignerName: certificatesv1.KubeletServingSignerName,
			Username:   "system:node:n1",
			Groups:     []string{"system:nodes", "system:authenticated"},
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth},
		},
	}
}

func newNode(name string, addrs ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addrs}}
}

func n1() *corev1.Node {
	return newNode("n1",
		corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.11"},
		// Written differently from the SAN: compared as IPs, not strings.
		corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "2001:db8:0:0::11"},
		corev1.NodeAddress{Type: corev1.NodeHostName, Address: "n1"},
		corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: "n1.cluster.internal"},
	)
}

func n2() *corev1.Node {
	return newNode("n2",
		corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.12"},
		corev1.NodeAddress{Type: corev1.NodeHostName, Address: "n2"},
	)
}

func TestValidate(t *testing.T) {
	type tc struct {
		name string
		csr  *certificatesv1.CertificateSigningRequest
		node *corev1.Node
		want string // substring of the error; "" = valid
	}
	csr := func(edit func(*x509.CertificateRequest), spec func(*certificatesv1.CertificateSigningRequest)) *certificatesv1.CertificateSigningRequest {
		c := newCSR("c", request(t, edit))
		if spec != nil {
			spec(c)
		}
		return c
	}
	cond := func(ty certificatesv1.RequestConditionType) func(*certificatesv1.CertificateSigningRequest) {
		return func(c *certificatesv1.CertificateSigningRequest) {
			c.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: ty, Status: corev1.ConditionTrue}}
		}
	}
	// The n1 Node renamed: when the node or requester is the point, the addresses still match.
	renamed := func(name string) *corev1.Node { n := n1(); n.Name = name; return n }
	badSig := csr(nil, func(c *certificatesv1.CertificateSigningRequest) {
		b, _ := pem.Decode(c.Spec.Request)
		b.Bytes[len(b.Bytes)-1] ^= 0xff // last byte of the signature's s
		c.Spec.Request = pem.EncodeToMemory(b)
	})
	uri, _ := url.Parse("spiffe://cluster.local/ns/kube-system/sa/default")

	cases := []tc{
		{name: "good", csr: csr(nil, nil), node: n1()},
		{name: "good with key encipherment", node: n1(), csr: csr(nil, func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Usages = append(c.Spec.Usages, certificatesv1.UsageKeyEncipherment)
		})},
		{name: "good with only a DNS SAN", node: n1(), csr: csr(func(r *x509.CertificateRequest) {
			r.IPAddresses, r.DNSNames = nil, []string{"n1.cluster.internal"}
		}, nil)},

		{name: "wrong signer", node: n1(), want: "signer", csr: csr(nil, func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.SignerName = certificatesv1.KubeAPIServerClientKubeletSignerName
		})},
		{name: "already approved", node: n1(), want: "already", csr: csr(nil, cond(certificatesv1.CertificateApproved))},
		{name: "already denied", node: n1(), want: "already", csr: csr(nil, cond(certificatesv1.CertificateDenied))},
		{name: "already failed", node: n1(), want: "already", csr: csr(nil, cond(certificatesv1.CertificateFailed))},

		// A Node named after the requester, so that only the requester rule stands in the way.
		{name: "requester kubernetes-admin", node: renamed("kubernetes-admin"), want: "not a node", csr: csr(
			func(r *x509.CertificateRequest) { r.Subject.CommonName = "kubernetes-admin" },
			func(c *certificatesv1.CertificateSigningRequest) { c.Spec.Username = "kubernetes-admin" })},
		{name: "requester not in system:nodes", node: n1(), want: "not in group", csr: csr(nil, func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Groups = []string{"system:authenticated"}
		})},

		{name: "not PEM", node: n1(), want: "not a PEM", csr: csr(nil, func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Request = []byte("hello")
		})},
		{name: "PEM of another type", node: n1(), want: "not a PEM", csr: csr(nil, func(c *certificatesv1.CertificateSigningRequest) {
			b, _ := pem.Decode(c.Spec.Request)
			c.Spec.Request = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})
		})},
		{name: "PEM of garbage", node: n1(), want: "parsing", csr: csr(nil, func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Request = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("hello")})
		})},
		{name: "bad signature", node: n1(), want: "signature", csr: badSig},
		{name: "CN of another node", node: n1(), want: "subject CN", csr: csr(func(r *x509.CertificateRequest) {
			r.Subject.CommonName = "system:node:n2"
		}, nil)},
		{name: "O missing", node: n1(), want: "subject O", csr: csr(func(r *x509.CertificateRequest) {
			r.Subject.Organization = nil
		}, nil)},
		{name: "O with system:masters too", node: n1(), want: "subject O", csr: csr(func(r *x509.CertificateRequest) {
			r.Subject.Organization = []string{"system:nodes", "system:masters"}
		}, nil)},

		{name: "no Node", node: nil, want: "does not exist", csr: csr(nil, nil)},
		{name: "Node of another name", node: renamed("n2"), want: "is not the requester", csr: csr(nil, nil)},
		{name: "IP SAN of another node", node: n1(), want: "IP SAN 10.0.0.12", csr: csr(func(r *x509.CertificateRequest) {
			r.IPAddresses = append(r.IPAddresses, net.ParseIP("10.0.0.12"))
		}, nil)},
		{name: "DNS SAN not the node's", node: n1(), want: "DNS SAN", csr: csr(func(r *x509.CertificateRequest) {
			r.DNSNames = append(r.DNSNames, "kubernetes.default.svc")
		}, nil)},
		{name: "DNS SAN that is only an InternalIP", node: n1(), want: "DNS SAN", csr: csr(func(r *x509.CertificateRequest) {
			r.DNSNames = append(r.DNSNames, "10.0.0.11")
		}, nil)},
		{name: "email SAN", node: n1(), want: "email or URI", csr: csr(func(r *x509.CertificateRequest) {
			r.EmailAddresses = []string{"root@n1"}
		}, nil)},
		{name: "URI SAN", node: n1(), want: "email or URI", csr: csr(func(r *x509.CertificateRequest) {
			r.URIs = []*url.URL{uri}
		}, nil)},
		{name: "no SAN", node: n1(), want: "no SAN", csr: csr(func(r *x509.CertificateRequest) {
			r.IPAddresses, r.DNSNames = nil, nil
		}, nil)},

		{name: "client auth usage", node: n1(), want: "client auth", csr: csr(nil, func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Usages = append(c.Spec.Usages, certificatesv1.UsageClientAuth)
		})},
		{name: "no server auth", node: n1(), want: "lack", csr: csr(nil, func(c *certificatesv1.CertificateSigningRequest) {
			c.Spec.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment}
		})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Validate(c.csr, c.node)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("want an error about %q, got none", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("want an error about %q, got %v", c.want, err)
			}
		})
	}
}

// logs collects what the Approver logs, for the tests to wait on.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			n++
		}
	}
	return n
}

func start(t *testing.T, objs ...runtime.Object) (*fake.Clientset, *logs) {
	t.Helper()
	cs := fake.NewClientset(objs...)
	l := &logs{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { New(cs, l.logf).Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after the context ended")
		}
	})
	return cs, l
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func conditions(t *testing.T, cs *fake.Clientset, name string) []certificatesv1.CertificateSigningRequestCondition {
	t.Helper()
	c, err := cs.CertificatesV1().CertificateSigningRequests().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Status.Conditions
}

func approved(t *testing.T, cs *fake.Clientset, name string) bool {
	for _, c := range conditions(t, cs, name) {
		if c.Type == certificatesv1.CertificateApproved && c.Status == corev1.ConditionTrue && c.Reason == Reason {
			return true
		}
	}
	return false
}

func TestApproverApprovesOnlyGood(t *testing.T) {
	good := newCSR("good", request(t, nil))
	admin := newCSR("admin", request(t, nil))
	admin.Spec.Username, admin.Spec.Groups = "kubernetes-admin", []string{"kubeadm:cluster-admins", "system:authenticated"}
	otherCN := newCSR("other-cn", request(t, func(r *x509.CertificateRequest) { r.Subject.CommonName = "system:node:n2" }))
	// n2 asking for n1's address.
	wrongIP := newCSR("wrong-ip", request(t, func(r *x509.CertificateRequest) {
		r.Subject.CommonName, r.DNSNames, r.IPAddresses = "system:node:n2", []string{"n2"}, []net.IP{net.ParseIP("10.0.0.11")}
	}))
	wrongIP.Spec.Username = "system:node:n2"
	clientAuth := newCSR("client-auth", request(t, nil))
	clientAuth.Spec.Usages = append(clientAuth.Spec.Usages, certificatesv1.UsageClientAuth)
	wrongSigner := newCSR("wrong-signer", request(t, nil))
	wrongSigner.Spec.SignerName = certificatesv1.KubeAPIServerClientKubeletSignerName

	cs, l := start(t, n1(), n2(), good, admin, otherCN, wrongIP, clientAuth, wrongSigner)
	eventually(t, "the good CSR to be approved", func() bool { return approved(t, cs, "good") })
	forged := []string{"admin", "other-cn", "wrong-ip", "client-auth"}
	for _, name := range forged {
		eventually(t, "the reason "+name+" is left", func() bool { return l.count("CSR "+name+" left pending") > 0 })
	}
	time.Sleep(100 * time.Millisecond) // room for a wrong write, were one coming
	for _, name := range append(forged, "wrong-signer") {
		if c := conditions(t, cs, name); len(c) != 0 {
			t.Errorf("CSR %s: want no condition, got %+v", name, c)
		}
	}
	for _, a := range cs.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok && a.GetSubresource() == "approval" {
			if n := u.GetObject().(*certificatesv1.CertificateSigningRequest).Name; n != "good" {
				t.Errorf("approval written for CSR %s", n)
			}
		}
	}
	for _, name := range forged {
		if n := l.count("CSR " + name + " left pending"); n != 1 {
			t.Errorf("CSR %s: reason logged %d times, want once", name, n)
		}
	}
}

// A kubelet may ask before its Node lists the address: the CSR waits, then is approved.
func TestApproverWaitsForAddress(t *testing.T) {
	late := newCSR("late", request(t, func(r *x509.CertificateRequest) {
		r.IPAddresses = append(r.IPAddresses, net.ParseIP("10.0.0.50"))
	}))
	cs, l := start(t, n1(), late)
	eventually(t, "the reason to be logged", func() bool { return l.count("CSR late left pending: IP SAN 10.0.0.50") > 0 })
	if approved(t, cs, "late") {
		t.Fatal("approved before the node has the address")
	}
	node := n1()
	node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.50"})
	if _, err := cs.CoreV1().Nodes().UpdateStatus(context.Background(), node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the CSR to be approved", func() bool { return approved(t, cs, "late") })
}

// Another control plane approves first: the conflict is read as done, not approved twice.
func TestApproverConflict(t *testing.T) {
	good := newCSR("good", request(t, nil))
	cs := fake.NewClientset(n1(), good)
	gvr := certificatesv1.SchemeGroupVersion.WithResource("certificatesigningrequests")
	var once sync.Once
	cs.PrependReactor("update", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "approval" {
			return false, nil, nil
		}
		handled := false
		once.Do(func() {
			other := good.DeepCopy()
			other.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{
				Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Other",
			}}
			if err := cs.Tracker().Update(gvr, other, ""); err != nil {
				t.Error(err)
			}
			handled = true
		})
		if handled {
			return true, nil, apierrors.NewConflict(gvr.GroupResource(), "good", fmt.Errorf("changed"))
		}
		return false, nil, nil
	})
	l := &logs{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := New(cs, l.logf)
	a.left = map[types.UID]string{}
	if err := a.approve(ctx, good); err != nil {
		t.Fatal(err)
	}
	c := conditions(t, cs, "good")
	if len(c) != 1 || c[0].Reason != "Other" {
		t.Fatalf("want only the other approver's condition, got %+v", c)
	}
	if l.count("approved") != 0 {
		t.Errorf("claimed an approval it did not make: %q", l.lines)
	}
}
