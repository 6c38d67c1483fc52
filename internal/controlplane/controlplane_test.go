package controlplane

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	podsecurityload "k8s.io/pod-security-admission/admission/api/load"
	"sigs.k8s.io/yaml"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	componentbaseconfig "k8s.io/component-base/config"
	componentbasevalidation "k8s.io/component-base/config/validation"

	"k8s.io/apimachinery/pkg/runtime/schema"
	kubeadmv1 "k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
)

// The policy as the API server reads it: Secret bodies never recorded, writes recorded with
// their request, lease renewals and probes left out.
func TestAuditPolicy(t *testing.T) {
	b, err := yaml.Marshal(AuditPolicy())
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.LoadPolicyFromBytes(b)
	if err != nil {
		t.Fatalf("the API server refuses the policy: %v", err)
	}
	ev := policy.NewPolicyRuleEvaluator(p)
	admin := &user.DefaultInfo{Name: "kubernetes-admin", Groups: []string{"kubeadm:cluster-admins"}}
	for _, c := range []struct {
		attrs authorizer.AttributesRecord
		want  auditinternal.Level
	}{
		{authorizer.AttributesRecord{User: admin, Verb: "create", Resource: "secrets", Namespace: "default", ResourceRequest: true}, auditinternal.LevelMetadata},
		{authorizer.AttributesRecord{User: admin, Verb: "update", Resource: "secrets", Namespace: "default", ResourceRequest: true}, auditinternal.LevelMetadata},
		{authorizer.AttributesRecord{User: admin, Verb: "get", Resource: "secrets", Namespace: "default", ResourceRequest: true}, auditinternal.LevelMetadata},
		{authorizer.AttributesRecord{User: admin, Verb: "create", Resource: "configmaps", Namespace: "default", ResourceRequest: true}, auditinternal.LevelMetadata},
		{authorizer.AttributesRecord{User: admin, Verb: "create", Resource: "serviceaccounts", Subresource: "token", Namespace: "default", ResourceRequest: true}, auditinternal.LevelMetadata},
		{authorizer.AttributesRecord{User: admin, Verb: "create", APIGroup: "apps", Resource: "deployments", Namespace: "default", ResourceRequest: true}, auditinternal.LevelRequest},
		{authorizer.AttributesRecord{User: admin, Verb: "delete", Resource: "pods", Namespace: "default", ResourceRequest: true}, auditinternal.LevelRequest},
		{authorizer.AttributesRecord{User: admin, Verb: "list", Resource: "pods", Namespace: "default", ResourceRequest: true}, auditinternal.LevelMetadata},
		{authorizer.AttributesRecord{User: admin, Verb: "update", APIGroup: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system", ResourceRequest: true}, auditinternal.LevelNone},
		{authorizer.AttributesRecord{User: admin, Verb: "get", Path: "/livez"}, auditinternal.LevelNone},
		{authorizer.AttributesRecord{User: admin, Verb: "get", Path: "/readyz/etcd"}, auditinternal.LevelNone},
	} {
		if got := ev.EvaluatePolicyRule(c.attrs).Level; got != c.want {
			t.Errorf("%s %s/%s %s: level %s, want %s", c.attrs.Verb, c.attrs.Resource, c.attrs.Subresource, c.attrs.Path, got, c.want)
		}
	}
	if !slices.Contains(p.OmitStages, auditinternal.StageRequestReceived) {
		t.Errorf("RequestReceived is recorded: every request would be logged twice")
	}
}

// Pod Security as the API server's plugin reads it.
func TestAdmission(t *testing.T) {
	adm, err := Admission()
	if err != nil {
		t.Fatal(err)
	}
	if len(adm.Plugins) != 1 || adm.Plugins[0].Name != "PodSecurity" {
		t.Fatalf("plugins %+v, want only PodSecurity", adm.Plugins)
	}
	cfg, err := podsecurityload.LoadFromData(adm.Plugins[0].Configuration.Raw)
	if err != nil {
		t.Fatalf("the PodSecurity plugin refuses its configuration: %v", err)
	}
	if cfg.Defaults.Enforce != "baseline" || cfg.Defaults.Warn != "restricted" || cfg.Defaults.Audit != "restricted" {
		t.Errorf("defaults %+v, want baseline enforced, restricted warned and audited", cfg.Defaults)
	}
	for _, ns := range []string{"kube-system", "kube-flannel"} {
		if !slices.Contains(cfg.Exemptions.Namespaces, ns) {
			t.Errorf("%s is not exempt", ns)
		}
	}
	if slices.Contains(cfg.Exemptions.Namespaces, "default") {
		t.Errorf("default is exempt")
	}
}

func TestAuthentication(t *testing.T) {
	a := Authentication()
	if a.Anonymous == nil || !a.Anonymous.Enabled {
		t.Fatal("anonymous access is off: kubelet probes of the API server and join discovery need it")
	}
	var got []string
	for _, c := range a.Anonymous.Conditions {
		got = append(got, c.Path)
	}
	if len(got) == 0 {
		t.Fatal("anonymous may reach everything RBAC allows")
	}
	for _, p := range got {
		if !strings.HasPrefix(p, "/livez") && !strings.HasPrefix(p, "/readyz") && !strings.HasPrefix(p, "/healthz") &&
			p != "/api/v1/namespaces/kube-public/configmaps/cluster-info" {
			t.Errorf("anonymous may reach %s", p)
		}
	}
}

// The key as the API server loads it, and what a joining control plane refuses.
func TestEncryption(t *testing.T) {
	b, err := NewEncryption()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "enc.yaml")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := encryptionconfig.LoadEncryptionConfig(context.Background(), f, false, "test")
	if err != nil {
		t.Fatalf("the API server refuses the EncryptionConfiguration: %v", err)
	}
	if _, ok := cfg.Transformers[schema.GroupResource{Resource: "secrets"}]; !ok {
		t.Errorf("Secrets are not transformed: %v", cfg.Transformers)
	}
	if err := CheckEncryption(b); err != nil {
		t.Errorf("CheckEncryption refuses a new key: %v", err)
	}
	other, _ := NewEncryption()
	if string(other) == string(b) {
		t.Errorf("two clusters got the same key")
	}
	short := strings.Replace(string(b), "secret: ", "secret: AAAA", 1)
	if err := CheckEncryption([]byte(short)); err == nil {
		t.Errorf("CheckEncryption accepts a key that is not 32 bytes")
	}
	if err := CheckEncryption([]byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n")); err == nil {
		t.Errorf("CheckEncryption accepts a configuration that stores Secrets in plain text")
	}
}

func TestAPIServerFlags(t *testing.T) {
	var a kubeadmv1.APIServer
	APIServer(&a)
	args := map[string]string{}
	for _, x := range a.ExtraArgs {
		args[x.Name] = x.Value
	}
	for k, v := range map[string]string{
		"profiling": "false", "audit-log-maxage": "30", "audit-log-maxbackup": "10", "audit-log-maxsize": "100",
		"service-account-extend-token-expiration": "false", "audit-log-path": AuditLog,
		"encryption-provider-config": EncryptionFile, "kubelet-certificate-authority": "/etc/kubernetes/pki/ca.crt",
	} {
		if args[k] != v {
			t.Errorf("--%s=%q, want %q", k, args[k], v)
		}
	}
	if _, ok := args["anonymous-auth"]; ok {
		t.Errorf("--anonymous-auth set: the API server refuses it with --authentication-config")
	}
	// Every file a flag names is in a volume of the static pod.
	for _, x := range a.ExtraArgs {
		if !strings.HasPrefix(x.Value, "/") || strings.HasPrefix(x.Value, "/etc/kubernetes/pki/") {
			continue
		}
		mounted := false
		for _, v := range a.ExtraVolumes {
			if strings.HasPrefix(x.Value, v.MountPath+"/") {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("--%s=%s is in no volume of the API server", x.Name, x.Value)
		}
	}
}

// The controller manager and the scheduler get the same lease, one they accept: their own
// validation refuses a renew deadline not below the lease or not above the retry period.
func TestLeaderElection(t *testing.T) {
	for name, f := range map[string]func(*kubeadmv1.ControlPlaneComponent){"controller manager": ControllerManager, "scheduler": Scheduler} {
		var c kubeadmv1.ControlPlaneComponent
		f(&c)
		args := map[string]string{}
		for _, x := range c.ExtraArgs {
			args[x.Name] = x.Value
		}
		cfg := componentbaseconfig.LeaderElectionConfiguration{LeaderElect: true, ResourceLock: "leases", ResourceName: "x", ResourceNamespace: "kube-system"}
		for flag, d := range map[string]*metav1.Duration{"leader-elect-lease-duration": &cfg.LeaseDuration, "leader-elect-renew-deadline": &cfg.RenewDeadline, "leader-elect-retry-period": &cfg.RetryPeriod} {
			v, err := time.ParseDuration(args[flag])
			if err != nil {
				t.Fatalf("%s: --%s=%q: %v", name, flag, args[flag], err)
			}
			d.Duration = v
		}
		if errs := componentbasevalidation.ValidateLeaderElectionConfiguration(&cfg, field.NewPath("leaderElection")); len(errs) > 0 {
			t.Errorf("%s: the lease is refused: %v", name, errs.ToAggregate())
		}
		if cfg.RenewDeadline.Duration < 30*time.Second {
			t.Errorf("%s: a renewal may take %s, upstream's short deadline that a loaded host misses", name, cfg.RenewDeadline.Duration)
		}
	}
}
