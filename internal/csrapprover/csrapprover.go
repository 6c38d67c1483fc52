// Package csrapprover approves the serving-certificate requests of kubelets
// (serverTLSBootstrap: true). Kubernetes signs CSRs of signer kubernetes.io/kubelet-serving
// but approves none: without an approver the kubelets keep self-signed serving certificates,
// and kubectl logs/exec and metrics cannot verify them.
//
// A CSR is approved only when it asks for nothing the requesting node does not already own:
// its own name, and the addresses its Node object lists. Anything else is left pending, never
// denied, so that a person can still decide.
package csrapprover

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log"
	"net"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

const (
	// Reason is the reason of the Approved condition this package sets.
	Reason = "U7sKubeletServingApproved"

	signer      = certificatesv1.KubeletServingSignerName
	nodePrefix  = "system:node:"
	nodesGroup  = "system:nodes"
	recheckEach = 30 * time.Second
)

// allowedUsages are those a serving certificate needs: server auth, and the key usages of
// RSA and ECDSA TLS. Client auth is absent on purpose: a serving certificate must not be
// usable to log in as the node.
var allowedUsages = []certificatesv1.KeyUsage{
	certificatesv1.UsageDigitalSignature,
	certificatesv1.UsageKeyEncipherment,
	certificatesv1.UsageServerAuth,
}

// Validate says whether csr is a kubelet-serving request that node may have approved, and
// if not, which rule it breaks. node is the Node named by the requester, nil if there is none.
func Validate(csr *certificatesv1.CertificateSigningRequest, node *corev1.Node) error {
	if csr.Spec.SignerName != signer {
		return fmt.Errorf("signer is %q, not %s", csr.Spec.SignerName, signer)
	}
	if finished(csr) {
		return fmt.Errorf("already approved, denied or failed")
	}
	name, ok := strings.CutPrefix(csr.Spec.Username, nodePrefix)
	if !ok || name == "" {
		return fmt.Errorf("requester %q is not a node (%s<name>)", csr.Spec.Username, nodePrefix)
	}
	if !slices.Contains(csr.Spec.Groups, nodesGroup) {
		return fmt.Errorf("requester %q is not in group %s", csr.Spec.Username, nodesGroup)
	}

	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return fmt.Errorf("request is not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return fmt.Errorf("parsing the request: %w", err)
	}
	// Proves the requester holds the private key of the public key to be certified.
	if err := req.CheckSignature(); err != nil {
		return fmt.Errorf("request signature: %w", err)
	}
	if req.Subject.CommonName != csr.Spec.Username {
		return fmt.Errorf("subject CN %q is not the requester %q", req.Subject.CommonName, csr.Spec.Username)
	}
	if !slices.Equal(req.Subject.Organization, []string{nodesGroup}) {
		return fmt.Errorf("subject O %q is not exactly [%s]", req.Subject.Organization, nodesGroup)
	}

	if node == nil {
		return fmt.Errorf("node %q does not exist (yet)", name)
	}
	if node.Name != name {
		return fmt.Errorf("node %q is not the requester %q", node.Name, name)
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return fmt.Errorf("email or URI SANs are not allowed")
	}
	if len(req.DNSNames)+len(req.IPAddresses) == 0 {
		return fmt.Errorf("no SAN: a serving certificate must name the node's addresses")
	}
	var ips []net.IP
	var dns []string
	for _, a := range node.Status.Addresses {
		switch a.Type {
		case corev1.NodeInternalIP, corev1.NodeExternalIP:
			if ip := net.ParseIP(a.Address); ip != nil {
				ips = append(ips, ip)
			}
		case corev1.NodeHostName, corev1.NodeInternalDNS, corev1.NodeExternalDNS:
			dns = append(dns, a.Address)
		}
	}
	for _, ip := range req.IPAddresses {
		if !slices.ContainsFunc(ips, ip.Equal) {
			return fmt.Errorf("IP SAN %s is not an InternalIP/ExternalIP of node %q", ip, name)
		}
	}
	for _, d := range req.DNSNames {
		if !slices.Contains(dns, d) {
			return fmt.Errorf("DNS SAN %q is not a Hostname/InternalDNS/ExternalDNS of node %q", d, name)
		}
	}

	if !slices.Contains(csr.Spec.Usages, certificatesv1.UsageServerAuth) {
		return fmt.Errorf("usages %q lack %q", csr.Spec.Usages, certificatesv1.UsageServerAuth)
	}
	for _, u := range csr.Spec.Usages {
		if !slices.Contains(allowedUsages, u) {
			return fmt.Errorf("usage %q is not allowed (only %q)", u, allowedUsages)
		}
	}
	return nil
}

// finished says whether someone already decided on csr, or the signer gave up on it.
func finished(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return true
		}
	}
	return len(csr.Status.Certificate) > 0
}

// Approver approves the kubelet-serving CSRs that pass Validate. Several may run at once
// (one per control plane): whichever writes first wins, the others see it and stop.
type Approver struct {
	cs  kubernetes.Interface
	log func(format string, args ...any)

	// left remembers, per pending CSR, why it was left, so that each reason is logged once.
	left map[types.UID]string
}

// New returns an Approver using cs, which must be allowed to list and watch Nodes and CSRs,
// update certificatesigningrequests/approval and approve for the kubelet-serving signer.
// log defaults to log.Printf.
func New(cs kubernetes.Interface, log func(format string, args ...any)) *Approver {
	return &Approver{cs: cs, log: log}
}

// Run approves until ctx ends. Pending CSRs are checked again when a Node changes and every
// recheckEach: a kubelet may ask before its Node lists the addresses it asks for.
func (a *Approver) Run(ctx context.Context) {
	if a.log == nil {
		a.log = log.Printf
	}
	a.left = map[types.UID]string{}
	// The API server filters CSRs on spec.signerName, so the client-certificate CSRs (which
	// kube-controller-manager approves) are not even sent.
	csrFactory := informers.NewSharedInformerFactoryWithOptions(a.cs, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.signerName", signer).String()
		}))
	nodeFactory := informers.NewSharedInformerFactory(a.cs, 10*time.Minute)
	csrs := csrFactory.Certificates().V1().CertificateSigningRequests()
	nodes := nodeFactory.Core().V1().Nodes()

	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }}
	_, _ = csrs.Informer().AddEventHandler(handler)
	_, _ = nodes.Informer().AddEventHandler(handler)
	csrFactory.Start(ctx.Done())
	nodeFactory.Start(ctx.Done())
	defer csrFactory.Shutdown()
	defer nodeFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), csrs.Informer().HasSynced, nodes.Informer().HasSynced) {
		return
	}
	a.log("kubelet serving CSR approver started")
	tick := time.NewTicker(recheckEach)
	defer tick.Stop()
	for {
		if list, err := csrs.Lister().List(labels.Everything()); err == nil {
			a.sync(ctx, list, nodes.Lister().Get)
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-tick.C:
		}
	}
}

func (a *Approver) sync(ctx context.Context, list []*certificatesv1.CertificateSigningRequest, getNode func(string) (*corev1.Node, error)) {
	pending := map[types.UID]bool{}
	for _, csr := range list {
		// Filtered again: fake clients and old servers may ignore the field selector.
		if csr.Spec.SignerName != signer || finished(csr) {
			continue
		}
		pending[csr.UID] = true
		var node *corev1.Node
		if name, ok := strings.CutPrefix(csr.Spec.Username, nodePrefix); ok && name != "" {
			node, _ = getNode(name) // not found: Validate says so
		}
		if err := Validate(csr, node); err != nil {
			if a.left[csr.UID] != err.Error() {
				a.left[csr.UID] = err.Error()
				a.log("CSR %s left pending: %v", csr.Name, err)
			}
			continue
		}
		if err := a.approve(ctx, csr); err != nil {
			a.log("approving CSR %s: %v", csr.Name, err)
		}
	}
	for uid := range a.left {
		if !pending[uid] {
			delete(a.left, uid)
		}
	}
}

// approve adds the Approved condition. On a conflict the CSR is read again: if another
// approver got there first there is nothing left to do; the spec cannot change, so the
// validation still holds.
func (a *Approver) approve(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	api := a.cs.CertificatesV1().CertificateSigningRequests()
	cur, done := csr, false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if finished(cur) {
			return nil
		}
		upd := cur.DeepCopy()
		upd.Status.Conditions = append(upd.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type:           certificatesv1.CertificateApproved,
			Status:         corev1.ConditionTrue,
			Reason:         Reason,
			Message:        "u7s approved: the node asked a serving certificate for its own name and the addresses of its Node object",
			LastUpdateTime: metav1.Now(),
		})
		_, err := api.UpdateApproval(ctx, upd.Name, upd, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			fresh, gerr := api.Get(ctx, cur.Name, metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			cur = fresh
		}
		done = err == nil
		return err
	})
	switch {
	case apierrors.IsNotFound(err):
		return nil // deleted meanwhile (by its kubelet, or the CSR cleaner)
	case err != nil:
		return fmt.Errorf("updating the approval: %w", err)
	case done:
		a.log("CSR %s approved: serving certificate of %s", csr.Name, csr.Spec.Username)
	}
	return nil
}
