package users

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// signer plays kube-controller-manager's kube-apiserver-client signer on a fake clientset: an
// approved request is signed by a CA of the test for the duration asked, capped at maxDuration.
func signer(t *testing.T, ctx context.Context, cs *fake.Clientset, maxDuration time.Duration) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, IsCA: true,
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour * 24 * 400), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	w, err := cs.CertificatesV1().CertificateSigningRequests().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer w.Stop()
		serial := int64(100)
		for ev := range w.ResultChan() {
			req, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
			if !ok || len(req.Status.Certificate) > 0 || req.Spec.SignerName != certificatesv1.KubeAPIServerClientSignerName {
				continue
			}
			approved := false
			for _, c := range req.Status.Conditions {
				approved = approved || c.Type == certificatesv1.CertificateApproved
			}
			if !approved {
				continue
			}
			b, _ := pem.Decode(req.Spec.Request)
			cr, err := x509.ParseCertificateRequest(b.Bytes)
			if err != nil {
				continue
			}
			d := maxDuration
			if req.Spec.ExpirationSeconds != nil && time.Duration(*req.Spec.ExpirationSeconds)*time.Second < d {
				d = time.Duration(*req.Spec.ExpirationSeconds) * time.Second
			}
			serial++
			der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: cr.Subject,
				NotBefore: time.Now(), NotAfter: time.Now().Add(d), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
				ca, cr.PublicKey, caKey)
			if err != nil {
				continue
			}
			req.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
			_, _ = cs.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, req, metav1.UpdateOptions{})
		}
	}()
}

func cluster(objs ...runtime.Object) *fake.Clientset {
	objs = append(objs,
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "view"}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "edit"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pod-reader", Namespace: "shop"}},
	)
	return fake.NewSimpleClientset(objs...)
}

func TestIssue(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := cluster()
	signer(t, ctx, cs, 24*time.Hour)
	u, err := Issue(ctx, cs, "alice", []string{"developers"}, time.Hour, "cp1")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := parseCert(u.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "alice" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "developers" {
		t.Errorf("certificate of %v", cert.Subject)
	}
	if d := time.Until(cert.NotAfter); d > time.Hour || d < 50*time.Minute {
		t.Errorf("certificate valid for %s, asked 1h", d)
	}
	// The key written is the certificate's.
	kb, _ := pem.Decode(u.KeyPEM)
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("the key is not the certificate's")
	}
	// The request asked the client signer, for client auth, and was approved by u7s.
	reqs, _ := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if len(reqs.Items) != 1 {
		t.Fatalf("%d requests", len(reqs.Items))
	}
	r := reqs.Items[0]
	if r.Spec.SignerName != certificatesv1.KubeAPIServerClientSignerName || *r.Spec.ExpirationSeconds != 3600 {
		t.Errorf("request for %s, %d s", r.Spec.SignerName, *r.Spec.ExpirationSeconds)
	}
	// Recorded, with the certificate's expiry.
	rec, err := getRecord(ctx, cs, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Serial != cert.SerialNumber.Text(16) || !rec.NotAfter.Equal(cert.NotAfter.UTC()) || rec.Issuer != "cp1" {
		t.Errorf("record %+v", rec)
	}

	// Its kubeconfig: the admin's server and CA, the user's certificate and key.
	admin := clientcmdapi.NewConfig()
	admin.Clusters["kubernetes"] = &clientcmdapi.Cluster{Server: "https://10.0.0.1:6443", CertificateAuthorityData: []byte("CA")}
	admin.AuthInfos["kubernetes-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: []byte("ADMIN")}
	admin.Contexts["kubernetes-admin@kubernetes"] = &clientcmdapi.Context{Cluster: "kubernetes", AuthInfo: "kubernetes-admin"}
	admin.CurrentContext = "kubernetes-admin@kubernetes"
	data, err := Kubeconfig(admin, u)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*kc, nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://10.0.0.1:6443" || string(cfg.CAData) != "CA" || string(cfg.CertData) != string(u.CertPEM) || string(cfg.KeyData) != string(u.KeyPEM) {
		t.Errorf("kubeconfig: %s", data)
	}
	if strings.Contains(string(data), "ADMIN") {
		t.Error("the admin's credentials are in the user's kubeconfig")
	}
}

func TestIssueRefusesBeforeAsking(t *testing.T) {
	for _, c := range []struct {
		name   string
		groups []string
		d      time.Duration
		want   string
	}{
		{"alice", []string{"system:masters"}, time.Hour, "system:masters"},
		{"alice", []string{"system:nodes"}, time.Hour, "system:"},
		{"Alice", nil, time.Hour, "user name"},
		{"system:admin", nil, time.Hour, "user name"},
		{"alice", nil, time.Minute, "10 minutes"},
	} {
		cs := cluster()
		_, err := Issue(context.Background(), cs, c.name, c.groups, c.d, "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v %s: %v, want an error naming %q", c.name, c.groups, c.d, err, c.want)
		}
		for _, a := range cs.Actions() {
			if a.GetVerb() == "create" {
				t.Errorf("%s %v: %s %s before refusing", c.name, c.groups, a.GetVerb(), a.GetResource().Resource)
			}
		}
	}
}

func TestBindListUnbindRemove(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := cluster()
	if _, err := Bind(ctx, cs, "alice", "view", "shop"); err == nil || !strings.Contains(err.Error(), "u7s user add alice") {
		t.Errorf("binding a user never added: %v", err)
	}
	signer(t, ctx, cs, 24*time.Hour)
	for _, n := range []string{"alice", "bob"} {
		if _, err := Issue(ctx, cs, n, nil, time.Hour, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []struct{ user, role, ns string }{
		{"alice", "view", "shop"}, {"alice", "Role/pod-reader", "shop"}, {"bob", "edit", ""}, {"bob", "edit", ""},
	} {
		if _, err := Bind(ctx, cs, b.user, b.role, b.ns); err != nil {
			t.Fatalf("bind %v: %v", b, err)
		}
	}
	for _, bad := range []struct{ role, ns, want string }{
		{"no-such-role", "", "ClusterRole no-such-role"},
		{"view", "no-such-ns", "namespace no-such-ns"},
		{"Role/pod-reader", "", "--namespace"},
		{"Role/none", "shop", "Role none in shop"},
		{"a/b", "", "not a role name"},
	} {
		if _, err := Bind(ctx, cs, "alice", bad.role, bad.ns); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("bind alice %s in %q: %v, want an error naming %q", bad.role, bad.ns, err, bad.want)
		}
	}
	rb, err := cs.RbacV1().RoleBindings("shop").Get(ctx, "u7s-user:alice:view", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rb.RoleRef.Kind != "ClusterRole" || rb.RoleRef.Name != "view" || len(rb.Subjects) != 1 || rb.Subjects[0].Kind != "User" || rb.Subjects[0].Name != "alice" {
		t.Errorf("binding %+v", rb)
	}
	if rb, err := cs.RbacV1().RoleBindings("shop").Get(ctx, "u7s-user:alice:role:pod-reader", metav1.GetOptions{}); err != nil || rb.RoleRef.Kind != "Role" {
		t.Errorf("the Role's binding: %v %+v", err, rb)
	}

	list := func() map[string][]string {
		all, err := List(ctx, cs)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string][]string{}
		for _, u := range all {
			m[u.Name] = nil
			for _, b := range u.Bindings {
				m[u.Name] = append(m[u.Name], b.String())
			}
		}
		return m
	}
	got := list()
	if strings.Join(got["alice"], "|") != "Role/pod-reader in shop|view in shop" || strings.Join(got["bob"], "|") != "edit (cluster-wide)" {
		t.Errorf("list: %v", got)
	}

	if err := Unbind(ctx, cs, "alice", "view", "shop"); err != nil {
		t.Fatal(err)
	}
	if err := Unbind(ctx, cs, "alice", "view", "shop"); err == nil || !strings.Contains(err.Error(), "no binding") {
		t.Errorf("unbinding twice: %v", err)
	}
	if got := list(); strings.Join(got["alice"], "|") != "Role/pod-reader in shop" {
		t.Errorf("list after unbind: %v", got)
	}

	removed, notAfter, err := Remove(ctx, cs, "bob")
	if err != nil || len(removed) != 1 || notAfter.IsZero() {
		t.Fatalf("remove bob: %v %v %v", removed, notAfter, err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, "u7s-user:bob:edit", metav1.GetOptions{}); err == nil {
		t.Error("bob's binding is still there")
	}
	if got := list(); len(got) != 1 || got["alice"] == nil {
		t.Errorf("list after remove: %v", got)
	}
	if _, _, err := Remove(ctx, cs, "bob"); err == nil || !strings.Contains(err.Error(), "no user bob") {
		t.Errorf("removing twice: %v", err)
	}
}
