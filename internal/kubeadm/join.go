package kubeadm

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	kubeadmapi "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm"
	kubeadmv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"
	"k8s.io/kubernetes/cmd/kubeadm/app/discovery/token"
	"k8s.io/kubernetes/cmd/kubeadm/app/phases/copycerts"
	etcdphase "k8s.io/kubernetes/cmd/kubeadm/app/phases/etcd"
	cryptoutil "k8s.io/kubernetes/cmd/kubeadm/app/util/crypto"
	etcdutil "k8s.io/kubernetes/cmd/kubeadm/app/util/etcd"
	kubeconfigutil "k8s.io/kubernetes/cmd/kubeadm/app/util/kubeconfig"
	"sigs.k8s.io/yaml"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/paths"
)

// JoinOptions are the choices of `u7s join` that reach kubeadm.
type JoinOptions struct {
	Node           *config.Node
	Endpoint       string   // the API server (or balancer) HOST:PORT
	Token          string   // bootstrap token, [a-z0-9]{6}.[a-z0-9]{16}
	CACertHashes   []string // sha256:... pins of the cluster CA's public key
	ControlPlane   bool
	CertificateKey string
}

// JoinDocuments returns the JoinConfiguration of a node that joins. kubeadm reads only this
// document from a join configuration: the node's own kubelet settings come from the patches.
func JoinDocuments(o JoinOptions) ([]byte, error) {
	n := o.Node
	j := &kubeadmv1.JoinConfiguration{
		TypeMeta:         metav1.TypeMeta{APIVersion: kubeadmv1.SchemeGroupVersion.String(), Kind: "JoinConfiguration"},
		NodeRegistration: nodeRegistration(n),
		Discovery: kubeadmv1.Discovery{
			BootstrapToken: &kubeadmv1.BootstrapTokenDiscovery{
				Token:             o.Token,
				APIServerEndpoint: o.Endpoint,
				CACertHashes:      o.CACertHashes,
			},
			TLSBootstrapToken: o.Token,
		},
		Patches:  &kubeadmv1.Patches{Directory: PatchesDir},
		Timeouts: timeouts(n.Timeout()),
	}
	if o.ControlPlane {
		j.ControlPlane = &kubeadmv1.JoinControlPlane{
			LocalAPIEndpoint: kubeadmv1.APIEndpoint{AdvertiseAddress: n.AdvertiseAddress, BindPort: int32(n.APIServerPort)},
			CertificateKey:   o.CertificateKey,
		}
	}
	return marshalDocuments(j)
}

// Discover does what kubeadm join does first, before the host changes: it fetches the
// cluster-info ConfigMap from endpoint, checks its signature with the token and the CA
// against the pins, and returns a client authenticated by the token. A wrong token or CA
// hash, or an endpoint that does not answer, is an error that names it.
func Discover(ctx context.Context, o JoinOptions, timeout time.Duration) (kubernetes.Interface, error) {
	d := &kubeadmapi.Discovery{
		BootstrapToken: &kubeadmapi.BootstrapTokenDiscovery{
			Token: o.Token, APIServerEndpoint: o.Endpoint, CACertHashes: o.CACertHashes,
		},
		TLSBootstrapToken: o.Token,
	}
	kc, err := token.RetrieveValidatedConfigInfo(nil, d, timeout)
	if err != nil {
		return nil, explainDiscovery(o, err)
	}
	for _, c := range kc.Clusters {
		cfg := &rest.Config{Host: c.Server, BearerToken: o.Token, Timeout: 15 * time.Second,
			TLSClientConfig: rest.TLSClientConfig{CAData: c.CertificateAuthorityData}}
		return kubernetes.NewForConfig(kube.Retrying(cfg))
	}
	return nil, fmt.Errorf("the cluster-info of %s names no cluster", o.Endpoint)
}

func explainDiscovery(o JoinOptions, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "none of the public keys") || strings.Contains(msg, "public key"):
		return fmt.Errorf("the cluster's CA at %s does not match --discovery-token-ca-cert-hash %s: copy the hash from the join command that u7s init or u7s token create --print-join-command printed (%v)",
			o.Endpoint, strings.Join(o.CACertHashes, ","), err)
	case strings.Contains(msg, "JWS") || strings.Contains(msg, "token"):
		return fmt.Errorf("the token is not valid for the cluster at %s (wrong, expired or deleted): make a new one on a control plane with u7s token create --print-join-command (%v)", o.Endpoint, err)
	default:
		return fmt.Errorf("cannot reach the cluster's API at %s: check the address and port, that the control plane runs, and the firewall (%v)", o.Endpoint, err)
	}
}

// CheckCertificateKey tries the key on the control-plane certificates the cluster holds
// (kubeadm's kubeadm-certs Secret, uploaded by init --upload-certs, deleted after 2 hours),
// decrypting them into a scratch directory that is removed again.
func CheckCertificateKey(ctx context.Context, cs kubernetes.Interface, key string) error {
	if _, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, "kubeadm-certs", metav1.GetOptions{}); err != nil {
		return fmt.Errorf("the cluster holds no uploaded control-plane certificates (they expire 2 hours after upload): on a control plane run u7s init phase upload-certs --upload-certs and use the key it prints last (%v)", err)
	}
	dir, err := os.MkdirTemp("", "u7s-certcheck-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg := &kubeadmapi.InitConfiguration{}
	cfg.CertificatesDir = dir
	devnull, _ := os.Open(os.DevNull)
	stdout := os.Stdout
	if devnull != nil { // DownloadCerts prints its progress to stdout
		os.Stdout = devnull
		defer func() { os.Stdout = stdout; devnull.Close() }()
	}
	if err := copycerts.DownloadCerts(cs, cfg, key); err != nil {
		return fmt.Errorf("--certificate-key does not decrypt the cluster's control-plane certificates (wrong key, or certificates uploaded again since): run u7s init phase upload-certs --upload-certs on a control plane and use the key it prints last (%v)", err)
	}
	return nil
}

// NewCertificateKey makes a key for uploading the control-plane certificates.
func NewCertificateKey() (string, error) { return copycerts.CreateCertificateKey() }

// ValidToken checks a bootstrap token's form.
func ValidToken(t string) error {
	id, secret, ok := strings.Cut(t, ".")
	if !ok || len(id) != 6 || len(secret) != 16 || strings.Trim(id+secret, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		return errors.New("--token: want a bootstrap token like abcdef.0123456789abcdef (from u7s token create)")
	}
	return nil
}

// PatchesDir holds kubeadm's patches of this node: its own kubelet settings.
const PatchesDir = paths.KubeadmPatchesDir

// RemoveEtcdMember removes this control plane's stacked etcd member from the cluster (as
// kubeadm reset does), from the host: the etcd endpoints are the control planes' host
// addresses, and the certificates are /etc/kubernetes/pki on the host too. The last member
// is left alone.
func RemoveEtcdMember(n *config.Node) error {
	client, err := kubeconfigutil.ClientSetFromFile(paths.AdminKubeconfig)
	if err != nil {
		return err
	}
	cfg := &kubeadmapi.InitConfiguration{}
	cfg.CertificatesDir = paths.PKIDir
	cfg.LocalAPIEndpoint = kubeadmapi.APIEndpoint{AdvertiseAddress: n.AdvertiseAddress, BindPort: int32(n.APIServerPort)}
	// An etcd busy with a leader change or a loaded host times a call out: tried again for a
	// while (removing a member that is gone already is no error), as kubeadm retries its own calls.
	var last error
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = kube.Poll(ctx, 5*time.Second, func(context.Context) (bool, error) {
		last = etcdphase.RemoveStackedEtcdMemberFromCluster(client, cfg)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("removing the etcd member of %s: %w", n.AdvertiseAddress, last)
	}
	return nil
}

// UploadCerts uploads the control-plane certificates of this host (/etc/kubernetes/pki),
// encrypted with key, into the kubeadm-certs Secret through cs: kubeadm's own upload
// (copycerts, linked). Not kubeadm's "init phase upload-certs", which first makes sure of the
// admin group's ClusterRoleBinding and, on a control plane that joined (no super-admin.conf),
// fails when an API server not yet ready answers that check with Forbidden.
func UploadCerts(cs kubernetes.Interface, key string) error {
	cfg := &kubeadmapi.InitConfiguration{}
	cfg.CertificatesDir = paths.PKIDir
	return copycerts.UploadCerts(cs, cfg, key)
}

// Networks are the cluster's pod and Service networks: a node's namespace fences them.
func Networks(cc *kubeadmv1.ClusterConfiguration) (pod, svc string, err error) {
	if cc.Networking.PodSubnet == "" || cc.Networking.ServiceSubnet == "" {
		return "", "", errors.New("the cluster's kubeadm-config names no pod or Service subnet")
	}
	return cc.Networking.PodSubnet, cc.Networking.ServiceSubnet, nil
}

// ClusterConfiguration is the cluster's ClusterConfiguration in kubeadm's kubeadm-config
// ConfigMap (readable with a bootstrap token, as kubeadm join reads it).
func ClusterConfiguration(ctx context.Context, cs kubernetes.Interface) (*kubeadmv1.ClusterConfiguration, error) {
	cm, err := cs.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, kubeadmconstants.KubeadmConfigConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the cluster's kubeadm-config: %w", err)
	}
	var cc kubeadmv1.ClusterConfiguration
	if err := yaml.Unmarshal([]byte(cm.Data[kubeadmconstants.ClusterConfigurationConfigMapKey]), &cc); err != nil {
		return nil, fmt.Errorf("the cluster's kubeadm-config: %w", err)
	}
	return &cc, nil
}

// EtcdMembers lists the cluster's stacked etcd members, "NAME PEER-URL" each, from a
// control plane's host (admin.conf, the etcd client certificate in /etc/kubernetes/pki).
func EtcdMembers() ([]string, error) {
	client, err := kubeconfigutil.ClientSetFromFile(paths.AdminKubeconfig)
	if err != nil {
		return nil, fmt.Errorf("%s (only a control plane has it): %w", paths.AdminKubeconfig, err)
	}
	ec, err := etcdutil.NewFromCluster(client, paths.KubernetesDir+"/pki")
	if err != nil {
		return nil, fmt.Errorf("connecting to etcd: %w", err)
	}
	ms, err := ec.ListMembers()
	if err != nil {
		return nil, fmt.Errorf("listing etcd members: %w", err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Name+" "+m.PeerURL)
	}
	return out, nil
}

// encryptionEntry is the key of the Secrets EncryptionConfiguration in kubeadm's kubeadm-certs
// Secret: sealed with the certificate key as the certificates there are, readable by the same
// joining control planes, and gone when kubeadm's Secret expires.
const encryptionEntry = "u7s-encryption.yaml"

// UploadEncryption adds this control plane's Secrets EncryptionConfiguration, encrypted with
// the certificate key, to the kubeadm-certs Secret that upload-certs made with that key.
func UploadEncryption(ctx context.Context, cs kubernetes.Interface, key string, cfg []byte) error {
	raw, err := hex.DecodeString(key)
	if err != nil {
		return fmt.Errorf("certificate key: %w", err)
	}
	sealed, err := cryptoutil.EncryptBytes(cfg, raw)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"data": map[string][]byte{encryptionEntry: sealed}})
	if err != nil {
		return err
	}
	if _, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Patch(ctx, kubeadmconstants.KubeadmCertsSecret,
		types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("adding the Secrets encryption key to %s: %w", kubeadmconstants.KubeadmCertsSecret, err)
	}
	return nil
}

// DownloadEncryption returns the cluster's Secrets EncryptionConfiguration from kubeadm-certs.
func DownloadEncryption(ctx context.Context, cs kubernetes.Interface, key string) ([]byte, error) {
	raw, err := hex.DecodeString(key)
	if err != nil {
		return nil, fmt.Errorf("--certificate-key: %w", err)
	}
	s, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, kubeadmconstants.KubeadmCertsSecret, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the uploaded certificates: %w", err)
	}
	sealed, ok := s.Data[encryptionEntry]
	if !ok {
		return nil, errors.New("the uploaded certificates hold no Secrets encryption key (uploaded by kubeadm itself, or by an older u7s): " +
			"run u7s init phase upload-certs --upload-certs on a control plane and use the key it prints last")
	}
	cfg, err := cryptoutil.DecryptBytes(sealed, raw)
	if err != nil {
		return nil, fmt.Errorf("--certificate-key does not decrypt the Secrets encryption key: %w", err)
	}
	return cfg, nil
}

// EtcdJoinPhase is kubeadm join's phase that adds a control plane's etcd member. It gives up at
// the first etcd member list that takes over two seconds (kubeadm's listMembers returns the
// first error instead of polling again), and a loaded host's etcd takes that long right after
// the new member is announced: CI's third control planes failed there, again and again. Every
// step of it is safe to run again (the member is added only if absent, the manifest is written
// the same, promotion skips a voting member), so u7s runs a control plane's join in three parts:
// kubeadm join up to this phase, the phase alone until it succeeds, and kubeadm join after it.
const EtcdJoinPhase = "etcd-join"

// The phases that each outer part of a control plane's join skips: JoinBeforeEtcd ends with
// kubelet-start, JoinAfterEtcd goes on from kubelet-wait-bootstrap.
var (
	JoinBeforeEtcd = []string{EtcdJoinPhase, "kubelet-wait-bootstrap", "control-plane-join", "wait-control-plane"}
	JoinAfterEtcd  = []string{"preflight", "control-plane-prepare", "check-etcd", "kubelet-start", EtcdJoinPhase}
)

// WithSkipPhases returns the join documents (JoinDocuments) with kubeadm told to skip those
// phases (SkipPhases: kubeadm refuses --skip-phases beside --config).
func WithSkipPhases(docs []byte, skip []string) ([]byte, error) {
	var j kubeadmv1.JoinConfiguration
	if err := yaml.UnmarshalStrict(docs, &j); err != nil {
		return nil, fmt.Errorf("reading the join configuration: %w", err)
	}
	if j.Kind != "JoinConfiguration" {
		return nil, fmt.Errorf("the join configuration is a %q, want a JoinConfiguration", j.Kind)
	}
	j.SkipPhases = skip
	return marshalDocuments(&j)
}
