// Package controlplane holds the security configuration of a u7s control plane: the API
// server's audit policy, Pod Security defaults, anonymous-access rule and Secrets encryption,
// as the upstream API types, and the flags and volumes that give them to the static pods.
// Every control plane of a cluster has the same files (kubeadm copies the flags from the
// cluster's ClusterConfiguration to each control plane that joins).
package controlplane

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	kubeadmv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	podsecurityv1 "k8s.io/pod-security-admission/admission/api/v1"
	"sigs.k8s.io/yaml"

	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/paths"
)

// The files, under paths.ControlPlaneDir (owned by u7s-admin, 0700: the API server reads them
// as the namespace's root).
var (
	AuditPolicyFile    = filepath.Join(paths.ControlPlaneDir, "audit-policy.yaml")
	AdmissionFile      = filepath.Join(paths.ControlPlaneDir, "admission.yaml")
	AuthenticationFile = filepath.Join(paths.ControlPlaneDir, "authentication.yaml")
	// EncryptionFile holds the key of Secrets at rest: the same on every control plane.
	EncryptionFile = filepath.Join(paths.ControlPlaneDir, "encryption.yaml")
	// AuditLog is on the host's disk (the namespace sees the host's /var/log/u7s).
	AuditLog = filepath.Join(paths.AuditLogDir, "audit.log")
)

// ExemptNamespaces run the node's own components, which need more than Pod Security's
// baseline (kube-proxy, flannel: host network, NET_ADMIN).
var ExemptNamespaces = []string{metav1.NamespaceSystem, "kube-flannel"}

// AnonymousPaths are all an anonymous request may reach: the health endpoints (the kubelet
// probes the API server without credentials) and the cluster-info ConfigMap (join discovery
// reads it before it has credentials; the bootstrap token signs it).
var AnonymousPaths = []string{"/livez", "/readyz", "/healthz", "/api/v1/namespaces/kube-public/configmaps/cluster-info"}

// APIServer adds the hardening flags and the files' volumes to the API server of cc.
func APIServer(a *kubeadmv1.APIServer) {
	a.ExtraArgs = append(a.ExtraArgs,
		kubeadmv1.Arg{Name: "profiling", Value: "false"},
		kubeadmv1.Arg{Name: "audit-policy-file", Value: AuditPolicyFile},
		kubeadmv1.Arg{Name: "audit-log-path", Value: AuditLog},
		kubeadmv1.Arg{Name: "audit-log-maxage", Value: "30"},
		kubeadmv1.Arg{Name: "audit-log-maxbackup", Value: "10"},
		kubeadmv1.Arg{Name: "audit-log-maxsize", Value: "100"},
		// Tokens live as long as they say (kubeadm's default lets them outlive it by a year).
		kubeadmv1.Arg{Name: "service-account-extend-token-expiration", Value: "false"},
		// The kubelets' serving certificates are issued by the cluster CA (serverTLSBootstrap).
		kubeadmv1.Arg{Name: "kubelet-certificate-authority", Value: paths.KubernetesDir + "/pki/ca.crt"},
		kubeadmv1.Arg{Name: "encryption-provider-config", Value: EncryptionFile},
		kubeadmv1.Arg{Name: "admission-control-config-file", Value: AdmissionFile},
		kubeadmv1.Arg{Name: "authentication-config", Value: AuthenticationFile},
	)
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	dir := corev1.HostPathDirectory
	a.ExtraVolumes = append(a.ExtraVolumes,
		kubeadmv1.HostPathMount{Name: "u7s-control-plane", HostPath: paths.ControlPlaneDir, MountPath: paths.ControlPlaneDir, ReadOnly: true, PathType: dir},
		kubeadmv1.HostPathMount{Name: "u7s-audit-log", HostPath: paths.AuditLogDir, MountPath: paths.AuditLogDir, PathType: dirOrCreate},
	)
}

// ControllerManager and Scheduler turn profiling off (CIS 1.3.2, 1.4.1) and hold their leader
// lease through a slow API server.
func ControllerManager(c *kubeadmv1.ControlPlaneComponent) {
	c.ExtraArgs = append(c.ExtraArgs, kubeadmv1.Arg{Name: "profiling", Value: "false"})
	c.ExtraArgs = append(c.ExtraArgs, LeaderElection...)
}

func Scheduler(c *kubeadmv1.ControlPlaneComponent) {
	c.ExtraArgs = append(c.ExtraArgs, kubeadmv1.Arg{Name: "profiling", Value: "false"})
	c.ExtraArgs = append(c.ExtraArgs, LeaderElection...)
}

// LeaderElection is the leader lease of the controller manager and the scheduler. Upstream's
// (15 s, renewed within 10 s) assumes a fast API server: a loaded or slow host misses a renewal,
// the component exits and restarts with a backoff, and nothing is scheduled or reconciled
// meanwhile (seen on the test machine's loaded control planes). A renewal may take 40 s here;
// a control plane that dies is taken over within a minute.
var LeaderElection = []kubeadmv1.Arg{
	{Name: "leader-elect-lease-duration", Value: "60s"},
	{Name: "leader-elect-renew-deadline", Value: "40s"},
	{Name: "leader-elect-retry-period", Value: "5s"},
}

// AuditPolicy records who did what: metadata of every request, request bodies of writes, and
// never the contents of Secrets, ConfigMaps or tokens. Health probes, Events and lease
// renewals (every few seconds by every component) are left out.
func AuditPolicy() *auditv1.Policy {
	return &auditv1.Policy{
		TypeMeta:   metav1.TypeMeta{APIVersion: auditv1.SchemeGroupVersion.String(), Kind: "Policy"},
		OmitStages: []auditv1.Stage{auditv1.StageRequestReceived},
		Rules: []auditv1.PolicyRule{
			{Level: auditv1.LevelNone, NonResourceURLs: []string{"/livez*", "/readyz*", "/healthz*", "/version"}},
			{Level: auditv1.LevelNone, Resources: []auditv1.GroupResources{{Group: "", Resources: []string{"events"}}, {Group: "events.k8s.io", Resources: []string{"events"}}}},
			{Level: auditv1.LevelNone, Verbs: []string{"get", "update"}, Resources: []auditv1.GroupResources{{Group: "coordination.k8s.io", Resources: []string{"leases"}}}},
			{Level: auditv1.LevelMetadata, Resources: []auditv1.GroupResources{
				{Group: "", Resources: []string{"secrets", "configmaps", "serviceaccounts/token"}},
				{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
			}},
			{Level: auditv1.LevelRequest, Verbs: []string{"create", "update", "patch", "delete", "deletecollection"}},
			{Level: auditv1.LevelMetadata},
		},
	}
}

// Admission enforces Pod Security's baseline and warns and audits restricted, everywhere but
// ExemptNamespaces; a namespace's own labels override the defaults.
func Admission() (*apiserverv1.AdmissionConfiguration, error) {
	ps := &podsecurityv1.PodSecurityConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: podsecurityv1.SchemeGroupVersion.String(), Kind: "PodSecurityConfiguration"},
		Defaults: podsecurityv1.PodSecurityDefaults{
			Enforce: "baseline", EnforceVersion: "latest",
			Audit: "restricted", AuditVersion: "latest",
			Warn: "restricted", WarnVersion: "latest",
		},
		Exemptions: podsecurityv1.PodSecurityExemptions{Namespaces: ExemptNamespaces},
	}
	raw, err := json.Marshal(ps)
	if err != nil {
		return nil, err
	}
	return &apiserverv1.AdmissionConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: apiserverv1.SchemeGroupVersion.String(), Kind: "AdmissionConfiguration"},
		Plugins: []apiserverv1.AdmissionPluginConfiguration{{
			Name:          "PodSecurity",
			Configuration: &runtime.Unknown{Raw: raw, ContentType: runtime.ContentTypeJSON},
		}},
	}, nil
}

// Authentication keeps anonymous access (kubeadm's probes and join discovery need it) but only
// to AnonymousPaths: anything else without credentials is 401, whatever RBAC would allow.
func Authentication() *apiserverv1.AuthenticationConfiguration {
	conds := make([]apiserverv1.AnonymousAuthCondition, 0, len(AnonymousPaths))
	for _, p := range AnonymousPaths {
		conds = append(conds, apiserverv1.AnonymousAuthCondition{Path: p})
	}
	return &apiserverv1.AuthenticationConfiguration{
		TypeMeta:  metav1.TypeMeta{APIVersion: apiserverv1.SchemeGroupVersion.String(), Kind: "AuthenticationConfiguration"},
		Anonymous: &apiserverv1.AnonymousAuthConfig{Enabled: true, Conditions: conds},
	}
}

// NewEncryption makes the EncryptionConfiguration of a new cluster: Secrets sealed with
// secretbox under a fresh 32-byte key; identity last, so that Secrets written before (none on a
// new cluster) stay readable.
func NewEncryption() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	cfg := &apiserverv1.EncryptionConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: apiserverv1.SchemeGroupVersion.String(), Kind: "EncryptionConfiguration"},
		Resources: []apiserverv1.ResourceConfiguration{{
			Resources: []string{"secrets"},
			Providers: []apiserverv1.ProviderConfiguration{
				{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: []apiserverv1.Key{{Name: "u7s-1", Secret: base64.StdEncoding.EncodeToString(key)}}}},
				{Identity: &apiserverv1.IdentityConfiguration{}},
			},
		}},
	}
	return yaml.Marshal(cfg)
}

// CheckEncryption validates an EncryptionConfiguration received from another control plane:
// it must seal Secrets with a key of the right size.
func CheckEncryption(b []byte) error {
	var cfg apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		return fmt.Errorf("not an EncryptionConfiguration: %w", err)
	}
	for _, r := range cfg.Resources {
		for _, p := range r.Providers {
			if p.Secretbox != nil {
				for _, k := range p.Secretbox.Keys {
					if raw, err := base64.StdEncoding.DecodeString(k.Secret); err != nil || len(raw) != 32 {
						return fmt.Errorf("key %s of the EncryptionConfiguration is not 32 bytes of base64", k.Name)
					}
				}
				return nil
			}
		}
	}
	return errors.New("the EncryptionConfiguration does not seal Secrets with secretbox")
}

// WriteFiles writes the control plane's files, encryption being the EncryptionConfiguration
// (new for a cluster, received for a control plane that joins). Each file is 0600 and owned by
// uid:gid (u7s-admin), its directory 0700.
func WriteFiles(encryption []byte, uid, gid int) error {
	if err := CheckEncryption(encryption); err != nil {
		return err
	}
	adm, err := Admission()
	if err != nil {
		return err
	}
	files := map[string]any{AuditPolicyFile: AuditPolicy(), AdmissionFile: adm, AuthenticationFile: Authentication()}
	if err := fsutil.MkdirOwned(paths.ControlPlaneDir, 0o700, uid, gid); err != nil {
		return err
	}
	if err := fsutil.MkdirOwned(paths.AuditLogDir, 0o700, uid, gid); err != nil {
		return err
	}
	write := func(path string, b []byte) error {
		if err := fsutil.WriteFileAtomic(path, b, 0o600); err != nil {
			return err
		}
		return os.Chown(path, uid, gid)
	}
	for path, obj := range files {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", path, err)
		}
		if err := write(path, b); err != nil {
			return err
		}
	}
	return write(EncryptionFile, encryption)
}
