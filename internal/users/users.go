// Package users gives people their own access to the cluster (podsec-k8s-rbac's job): a client
// certificate issued through the CSR API and a kubeconfig around it, one RBAC binding per user
// and role, and a record of each user (groups, certificate expiry) in kube-system.
//
// Client certificates cannot be revoked: a user's access ends when their bindings go (remove,
// unbind) or when the certificate expires, so lifetimes are short and renewal is `add` again.
package users

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/certificate/csr"
	"k8s.io/client-go/util/keyutil"
)

const (
	// Namespace keeps the users' records.
	Namespace = "kube-system"
	// UserLabel marks every object u7s made for a user: its record and its bindings.
	UserLabel = "u7s.io/user"
	// recordPrefix names a user's record, a ConfigMap: recordPrefix + NAME.
	recordPrefix = "u7s-user-"
	// bindingPrefix begins the names of a user's bindings (bindingName).
	bindingPrefix = "u7s-user:"
	recordKey     = "user.json"
	// DefaultValidFor is the certificate lifetime asked when none is given: short, since the
	// certificate cannot be revoked. The cluster caps it (kube-controller-manager's
	// --cluster-signing-duration, a year by kubeadm's default).
	DefaultValidFor = 30 * 24 * time.Hour
	// signWait is how long the signer (kube-controller-manager) has to sign an approved request:
	// it does so in a second when it runs.
	signWait = 2 * time.Minute
	// minValidFor is the least the CSR API accepts (expirationSeconds >= 600).
	minValidFor = 10 * time.Minute
)

// Record is what the cluster keeps of a user: the groups and the certificate last issued.
type Record struct {
	Name     string    `json:"name"`
	Groups   []string  `json:"groups,omitempty"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"notAfter"`
	Issuer   string    `json:"issuedBy,omitempty"`
}

// Binding is one of a user's role bindings.
type Binding struct {
	Role      string // a ClusterRole, or Role/NAME for a Role of the namespace
	Namespace string // "" for a ClusterRoleBinding (cluster-wide)
}

func (b Binding) String() string {
	if b.Namespace == "" {
		return b.Role + " (cluster-wide)"
	}
	return b.Role + " in " + b.Namespace
}

// User is a Record with the user's bindings, as list shows them.
type User struct {
	Record
	Bindings []Binding
}

// ValidateName checks a user's name: it becomes the certificate's CN, the name the audit log
// and RBAC see, part of object names and a label value.
func ValidateName(name string) error {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("user name %q: %s (use lower-case letters, digits and '-', at most 63)", name, strings.Join(errs, "; "))
	}
	return nil
}

// ValidateGroups refuses the groups the API server gives meaning to: system:masters bypasses
// every authorization check, and no certificate that cannot be revoked may carry it.
func ValidateGroups(groups []string) error {
	for _, g := range groups {
		switch {
		case g == "":
			return errors.New("an empty group name")
		case strings.HasPrefix(g, "system:"):
			return fmt.Errorf("group %q: the system: groups are the cluster's own (system:masters is cluster-admin that no one can take back); bind a role instead: u7s user bind NAME cluster-admin", g)
		}
	}
	return nil
}

// parseRole splits ROLE into the roleRef of a binding: a ClusterRole by default, Role/NAME a
// Role of the namespace.
func parseRole(role, namespace string) (rbacv1.RoleRef, error) {
	kind, name := "ClusterRole", role
	if r, ok := strings.CutPrefix(role, "Role/"); ok {
		kind, name = "Role", r
		if namespace == "" {
			return rbacv1.RoleRef{}, fmt.Errorf("role %s is a Role of a namespace: give --namespace", role)
		}
	} else if r, ok := strings.CutPrefix(role, "ClusterRole/"); ok {
		name = r
	}
	if errs := path.ValidatePathSegmentName(name, false); name == "" || len(errs) > 0 {
		return rbacv1.RoleRef{}, fmt.Errorf("role %q: not a role name", role)
	}
	return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: name}, nil
}

func roleString(ref rbacv1.RoleRef) string {
	if ref.Kind == "Role" {
		return "Role/" + ref.Name
	}
	return ref.Name
}

// Issued is a user's new credentials.
type Issued struct {
	Record
	CertPEM, KeyPEM []byte
}

// Issue makes a key here (it never leaves this host but in the kubeconfig), asks the cluster's
// kube-apiserver-client signer for a certificate of name and groups valid for validFor, approves
// the request as the admin, waits for the certificate and records the user.
func Issue(ctx context.Context, cs kubernetes.Interface, name string, groups []string, validFor time.Duration, issuer string) (*Issued, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if err := ValidateGroups(groups); err != nil {
		return nil, err
	}
	if validFor < minValidFor {
		return nil, fmt.Errorf("--valid-for %s: the cluster signs for 10 minutes at least", validFor)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: name, Organization: groups},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("making the certificate request: %w", err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	reqName := fmt.Sprintf("%s%s-%d", recordPrefix, name, time.Now().UnixNano())
	_, uid, err := csr.RequestCertificateWithContext(ctx, cs, csrPEM, reqName, certificatesv1.KubeAPIServerClientSignerName,
		&validFor, []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth}, key)
	if err != nil {
		return nil, fmt.Errorf("asking the cluster for %s's certificate: %w", name, err)
	}
	req, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, reqName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the certificate request %s: %w", reqName, err)
	}
	req.Status.Conditions = append(req.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
		Reason: "U7sUserAdd", Message: "approved by u7s user add for " + name,
	})
	if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, reqName, req, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("approving the certificate request %s: %w", reqName, err)
	}
	wctx, cancel := context.WithTimeout(ctx, signWait)
	defer cancel()
	certPEM, err := waitSigned(wctx, cs, reqName, uid)
	if err != nil {
		return nil, fmt.Errorf("waiting for the cluster to sign %s's certificate (request %s; is kube-controller-manager running?): %w", name, reqName, err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if cert.Subject.CommonName != name || !slices.Equal(sorted(cert.Subject.Organization), sorted(groups)) {
		return nil, fmt.Errorf("the cluster signed %q of %v, asked %q of %v", cert.Subject.CommonName, cert.Subject.Organization, name, groups)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, err
	}
	rec := Record{Name: name, Groups: groups, Serial: cert.SerialNumber.Text(16), NotAfter: cert.NotAfter.UTC(), Issuer: issuer}
	if err := saveRecord(ctx, cs, rec); err != nil {
		return nil, err
	}
	return &Issued{Record: rec, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// waitSigned polls request name (of uid) until the signer issued its certificate or refused it.
func waitSigned(ctx context.Context, cs kubernetes.Interface, name string, uid types.UID) ([]byte, error) {
	for {
		req, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		switch {
		case err != nil && ctx.Err() == nil:
			// The API server may be restarting: asked again until the limit.
		case err != nil:
			return nil, err
		case req.UID != uid:
			return nil, fmt.Errorf("the request %s was replaced", name)
		case len(req.Status.Certificate) > 0:
			return req.Status.Certificate, nil
		}
		if err == nil {
			for _, c := range req.Status.Conditions {
				if c.Type == certificatesv1.CertificateDenied || c.Type == certificatesv1.CertificateFailed {
					return nil, fmt.Errorf("the request %s is %s: %s %s", name, c.Type, c.Reason, c.Message)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("not signed within %s: %w", signWait, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func parseCert(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("the cluster returned no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

func labels(name string) map[string]string { return map[string]string{UserLabel: name} }

func saveRecord(ctx context.Context, cs kubernetes.Interface, rec Record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: recordPrefix + rec.Name, Namespace: Namespace, Labels: labels(rec.Name)},
		Data:       map[string]string{recordKey: string(data)},
	}
	cms := cs.CoreV1().ConfigMaps(Namespace)
	if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("recording user %s: %w", rec.Name, err)
		}
	} else if err != nil {
		return fmt.Errorf("recording user %s: %w", rec.Name, err)
	}
	return nil
}

// Kubeconfig is a kubeconfig for the issued user, with admin's cluster (its server, the
// control-plane endpoint, and its CA).
func Kubeconfig(admin *clientcmdapi.Config, u *Issued) ([]byte, error) {
	ctx, ok := admin.Contexts[admin.CurrentContext]
	if !ok {
		return nil, fmt.Errorf("the admin kubeconfig has no current context %q", admin.CurrentContext)
	}
	cluster, ok := admin.Clusters[ctx.Cluster]
	if !ok {
		return nil, fmt.Errorf("the admin kubeconfig has no cluster %q", ctx.Cluster)
	}
	c := clientcmdapi.NewConfig()
	c.Clusters[ctx.Cluster] = &clientcmdapi.Cluster{Server: cluster.Server, CertificateAuthorityData: cluster.CertificateAuthorityData}
	c.AuthInfos[u.Name] = &clientcmdapi.AuthInfo{ClientCertificateData: u.CertPEM, ClientKeyData: u.KeyPEM}
	name := u.Name + "@" + ctx.Cluster
	c.Contexts[name] = &clientcmdapi.Context{Cluster: ctx.Cluster, AuthInfo: u.Name}
	c.CurrentContext = name
	return clientcmd.Write(*c)
}

// Bind gives a recorded user role (a ClusterRole, or Role/NAME) in namespace, or cluster-wide
// when namespace is "": one binding per user and role, made again if it exists.
func Bind(ctx context.Context, cs kubernetes.Interface, name, role, namespace string) (Binding, error) {
	ref, err := parseRole(role, namespace)
	if err != nil {
		return Binding{}, err
	}
	if _, err := getRecord(ctx, cs, name); err != nil {
		return Binding{}, err
	}
	if namespace == "" && ref.Kind == "ClusterRole" {
		if _, err := cs.RbacV1().ClusterRoles().Get(ctx, ref.Name, metav1.GetOptions{}); err != nil {
			return Binding{}, fmt.Errorf("ClusterRole %s: %w (kubectl get clusterroles lists them)", ref.Name, err)
		}
	}
	if namespace != "" {
		if _, err := cs.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{}); err != nil {
			return Binding{}, fmt.Errorf("namespace %s: %w", namespace, err)
		}
		if ref.Kind == "Role" {
			if _, err := cs.RbacV1().Roles(namespace).Get(ctx, ref.Name, metav1.GetOptions{}); err != nil {
				return Binding{}, fmt.Errorf("Role %s in %s: %w", ref.Name, namespace, err)
			}
		} else if _, err := cs.RbacV1().ClusterRoles().Get(ctx, ref.Name, metav1.GetOptions{}); err != nil {
			return Binding{}, fmt.Errorf("ClusterRole %s: %w (kubectl get clusterroles lists them)", ref.Name, err)
		}
	}
	meta := metav1.ObjectMeta{Name: bindingName(name, ref), Namespace: namespace, Labels: labels(name)}
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}}
	if namespace == "" {
		b := &rbacv1.ClusterRoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subjects}
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return Binding{}, fmt.Errorf("binding %s to %s: %w", name, role, err)
		}
	} else {
		b := &rbacv1.RoleBinding{ObjectMeta: meta, RoleRef: ref, Subjects: subjects}
		if _, err := cs.RbacV1().RoleBindings(namespace).Create(ctx, b, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return Binding{}, fmt.Errorf("binding %s to %s in %s: %w", name, role, namespace, err)
		}
	}
	return Binding{Role: roleString(ref), Namespace: namespace}, nil
}

// bindingName is the binding's object name: u7s-user:NAME:ROLE, or u7s-user:NAME:role:ROLE for
// a Role (no '/' in a name).
func bindingName(name string, ref rbacv1.RoleRef) string {
	if ref.Kind == "Role" {
		return bindingPrefix + name + ":role:" + ref.Name
	}
	return bindingPrefix + name + ":" + ref.Name
}

// Unbind removes the binding Bind made for name and role in namespace ("" cluster-wide).
func Unbind(ctx context.Context, cs kubernetes.Interface, name, role, namespace string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	ref, err := parseRole(role, namespace)
	if err != nil {
		return err
	}
	bn := bindingName(name, ref)
	if namespace == "" {
		err = cs.RbacV1().ClusterRoleBindings().Delete(ctx, bn, metav1.DeleteOptions{})
	} else {
		err = cs.RbacV1().RoleBindings(namespace).Delete(ctx, bn, metav1.DeleteOptions{})
	}
	if apierrors.IsNotFound(err) {
		where := "cluster-wide"
		if namespace != "" {
			where = "in " + namespace
		}
		return fmt.Errorf("user %s has no binding to %s %s (u7s user list shows them)", name, role, where)
	}
	if err != nil {
		return fmt.Errorf("removing %s's binding to %s: %w", name, role, err)
	}
	return nil
}

func getRecord(ctx context.Context, cs kubernetes.Interface, name string) (Record, error) {
	if err := ValidateName(name); err != nil {
		return Record{}, err
	}
	cm, err := cs.CoreV1().ConfigMaps(Namespace).Get(ctx, recordPrefix+name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Record{}, fmt.Errorf("no user %s (u7s user add %s makes it)", name, name)
	}
	if err != nil {
		return Record{}, fmt.Errorf("reading user %s: %w", name, err)
	}
	return decodeRecord(cm)
}

func decodeRecord(cm *corev1.ConfigMap) (Record, error) {
	var r Record
	if err := json.Unmarshal([]byte(cm.Data[recordKey]), &r); err != nil {
		return Record{}, fmt.Errorf("the record %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return r, nil
}

// List returns every recorded user with their bindings, by name.
func List(ctx context.Context, cs kubernetes.Interface) ([]User, error) {
	sel := metav1.ListOptions{LabelSelector: UserLabel}
	cms, err := cs.CoreV1().ConfigMaps(Namespace).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	byName := map[string]*User{}
	for i := range cms.Items {
		r, err := decodeRecord(&cms.Items[i])
		if err != nil {
			return nil, err
		}
		byName[r.Name] = &User{Record: r}
	}
	crbs, err := cs.RbacV1().ClusterRoleBindings().List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("listing bindings: %w", err)
	}
	rbs, err := cs.RbacV1().RoleBindings("").List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("listing bindings: %w", err)
	}
	add := func(user string, b Binding) {
		u, ok := byName[user]
		if !ok { // a binding whose user was removed by hand
			u = &User{Record: Record{Name: user}}
			byName[user] = u
		}
		u.Bindings = append(u.Bindings, b)
	}
	for _, b := range crbs.Items {
		add(b.Labels[UserLabel], Binding{Role: roleString(b.RoleRef)})
	}
	for _, b := range rbs.Items {
		add(b.Labels[UserLabel], Binding{Role: roleString(b.RoleRef), Namespace: b.Namespace})
	}
	var out []User
	for _, u := range byName {
		sort.Slice(u.Bindings, func(i, j int) bool { return u.Bindings[i].String() < u.Bindings[j].String() })
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Remove deletes every binding of name and its record. Its certificate stays valid until it
// expires (returned), but grants nothing its groups' bindings do not.
func Remove(ctx context.Context, cs kubernetes.Interface, name string) (removed []Binding, notAfter time.Time, err error) {
	if err := ValidateName(name); err != nil {
		return nil, time.Time{}, err
	}
	users, err := List(ctx, cs)
	if err != nil {
		return nil, time.Time{}, err
	}
	i := slices.IndexFunc(users, func(u User) bool { return u.Name == name })
	if i < 0 {
		return nil, time.Time{}, fmt.Errorf("no user %s (u7s user list shows them)", name)
	}
	for _, b := range users[i].Bindings {
		if err := Unbind(ctx, cs, name, b.Role, b.Namespace); err != nil {
			return removed, time.Time{}, err
		}
		removed = append(removed, b)
	}
	err = cs.CoreV1().ConfigMaps(Namespace).Delete(ctx, recordPrefix+name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return removed, time.Time{}, fmt.Errorf("removing the record of %s: %w", name, err)
	}
	return removed, users[i].NotAfter, nil
}
