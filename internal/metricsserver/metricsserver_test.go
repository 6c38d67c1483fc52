package metricsserver

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

var testOpts = Options{Image: "registry.local/k8s-p10/metrics-server:v0.8.0"}

func deployment(t *testing.T, o Options) *appsv1.Deployment {
	t.Helper()
	objs, err := Objects(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if d, ok := obj.(*appsv1.Deployment); ok && d.Name == DeploymentName {
			return d
		}
	}
	t.Fatal("no Deployment")
	return nil
}

func TestObjects(t *testing.T) {
	d := deployment(t, testOpts)
	if d.Namespace != Namespace {
		t.Errorf("Deployment in %q, want %q", d.Namespace, Namespace)
	}
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != testOpts.Image {
		t.Errorf("image %q, want %q", c.Image, testOpts.Image)
	}
	// The kubelets' serving certificates come from the cluster CA: they must be verified.
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--kubelet-insecure-tls") {
			t.Errorf("args %q skip verifying the kubelets' certificates", c.Args)
		}
	}
	for _, want := range []string{"--cert-dir=/tmp", "--secure-port=10250", "--kubelet-preferred-address-types=InternalIP",
		"--kubelet-use-node-status-port"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %q", c.Args, want)
		}
	}
	// A slow kubelet gets well over metrics-server's default 10 s, within what metrics-server
	// accepts (its options refuse a timeout over 0.9 of the resolution: the pod would not start).
	flag := func(name string) time.Duration {
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				d, err := time.ParseDuration(v)
				if err != nil {
					t.Fatalf("%s: %v", a, err)
				}
				return d
			}
		}
		t.Fatalf("args %q lack --%s", c.Args, name)
		return 0
	}
	res, timeout := flag("metric-resolution"), flag("kubelet-request-timeout")
	if timeout < 20*time.Second || res*9/10 < timeout || res > time.Minute {
		t.Errorf("--metric-resolution=%s --kubelet-request-timeout=%s: want a timeout of 20 s or more, at most 0.9 of a resolution of a minute or less", res, timeout)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/livez" || p.HTTPGet.Scheme != corev1.URISchemeHTTPS ||
		p.InitialDelaySeconds < 60 || p.PeriodSeconds*p.FailureThreshold < 150 {
		t.Errorf("liveness probe %+v, want /livez over HTTPS, patient with a slow host", p)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "https" {
		t.Errorf("readiness probe %+v, want /readyz on https", p)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool {
		return t.Key == "node-role.kubernetes.io/control-plane" && t.Effect == corev1.TaintEffectNoSchedule
	}) {
		t.Errorf("tolerations %+v: a one-node cluster's control plane could not run it", spec.Tolerations)
	}
	if spec.PriorityClassName != "system-cluster-critical" || spec.ServiceAccountName != DeploymentName {
		t.Errorf("priority class %q, service account %q", spec.PriorityClassName, spec.ServiceAccountName)
	}
}

// The pod passes Pod Security "restricted", the level u7s warns about everywhere.
func TestPodSecurityRestricted(t *testing.T) {
	e, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := deployment(t, testOpts)
	lv := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	r := policy.AggregateCheckResults(e.EvaluatePod(lv, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec))
	if !r.Allowed {
		t.Errorf("the pod violates Pod Security restricted: %s: %s", r.ForbiddenReason(), r.ForbiddenDetail())
	}
}

func TestAPIServiceObject(t *testing.T) {
	objs, err := Objects(testOpts)
	if err != nil {
		t.Fatal(err)
	}
	var s *apiregistrationv1.APIService
	for _, obj := range objs {
		if a, ok := obj.(*apiregistrationv1.APIService); ok {
			s = a
		}
	}
	if s == nil {
		t.Fatal("no APIService")
	}
	if s.Name != APIServiceName || s.Spec.Group != "metrics.k8s.io" || s.Spec.Version != "v1beta1" ||
		s.Spec.Service == nil || s.Spec.Service.Namespace != Namespace || s.Spec.Service.Name != DeploymentName ||
		!s.Spec.InsecureSkipTLSVerify || s.Spec.GroupPriorityMinimum != 100 || s.Spec.VersionPriority != 100 {
		t.Errorf("APIService %s: %+v", s.Name, s.Spec)
	}
	if _, ok := objs[len(objs)-1].(*apiregistrationv1.APIService); !ok {
		t.Error("the APIService is not the last object: the API would be registered before its server exists")
	}
}

func TestObjectsRejectsBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no image":    {},
		"white space": {Image: "registry.local/metrics-server: v0.8.0"},
	} {
		if _, err := Objects(o); err == nil || !strings.Contains(err.Error(), "metrics-server: ") {
			t.Errorf("%s: error %v, want one naming the option", name, err)
		}
	}
}

// apiServer serves the APIService endpoints the way the API server does, as far as package
// apply uses them.
type apiServer struct {
	mu   sync.Mutex
	objs map[string]*apiregistrationv1.APIService
	rv   int
}

const apiServicesPath = "/apis/apiregistration.k8s.io/v1/apiservices"

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gr := schema.GroupResource{Group: apiregistrationv1.GroupName, Resource: "apiservices"}
	name, _ := strings.CutPrefix(strings.TrimPrefix(r.URL.Path, apiServicesPath), "/")
	var in apiregistrationv1.APIService
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &in); err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
	}
	switch {
	case r.Method == http.MethodPost && name == "" && s.objs[in.Name] != nil:
		writeStatus(w, apierrors.NewAlreadyExists(gr, in.Name))
	case r.Method == http.MethodPost && name == "",
		r.Method == http.MethodPut && s.objs[name] != nil && s.objs[name].ResourceVersion == in.ResourceVersion:
		s.rv++
		in.ResourceVersion = strconv.Itoa(s.rv)
		s.objs[in.Name] = &in
		writeJSON(w, http.StatusOK, &in)
	case r.Method == http.MethodGet && s.objs[name] != nil:
		writeJSON(w, http.StatusOK, s.objs[name])
	case r.Method == http.MethodGet:
		writeStatus(w, apierrors.NewNotFound(gr, name))
	default:
		writeStatus(w, apierrors.NewBadRequest(r.Method+" "+r.URL.Path))
	}
}

func writeJSON(w http.ResponseWriter, code int, obj any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(obj)
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
	writeJSON(w, int(st.Code), &st)
}

// clientset is client-go's fake clientset whose discovery REST client reaches apiServer,
// as a clientset of a rest.Config reaches the API server.
type clientset struct {
	*fake.Clientset
	d discovery.DiscoveryInterface
}

func (c clientset) Discovery() discovery.DiscoveryInterface { return c.d }

func newClientset(t *testing.T) (clientset, *apiServer) {
	s := &apiServer{objs: map[string]*apiregistrationv1.APIService{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	d, err := discovery.NewDiscoveryClientForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return clientset{Clientset: fake.NewClientset(), d: d}, s
}

// Apply creates everything, the APIService included, and a second Apply (an upgrade) updates
// the Deployment's image in place.
func TestApply(t *testing.T) {
	ctx := context.Background()
	cs, srv := newClientset(t)
	if err := Apply(ctx, cs, testOpts); err != nil {
		t.Fatal(err)
	}
	if srv.objs[APIServiceName] == nil {
		t.Errorf("APIService %s was not created", APIServiceName)
	}
	for _, name := range []string{"system:aggregated-metrics-reader", "system:metrics-server"} {
		if _, err := cs.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Error(err)
		}
	}
	if _, err := cs.RbacV1().RoleBindings(Namespace).Get(ctx, "metrics-server-auth-reader", metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	if _, err := cs.CoreV1().Services(Namespace).Get(ctx, DeploymentName, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	o := Options{Image: "registry.local/k8s-p10/metrics-server:v0.8.1"}
	if err := Apply(ctx, cs, o); err != nil {
		t.Fatal(err)
	}
	d, err := cs.AppsV1().Deployments(Namespace).Get(ctx, DeploymentName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Template.Spec.Containers[0].Image; got != o.Image {
		t.Errorf("after the second Apply the image is %q, want %q", got, o.Image)
	}
}

func TestAvailable(t *testing.T) {
	ctx := context.Background()
	cs, srv := newClientset(t)
	if err := Available(ctx, cs); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Errorf("without the APIService: %v, want an error saying it is not registered", err)
	}
	if err := Apply(ctx, cs, testOpts); err != nil {
		t.Fatal(err)
	}
	if err := Available(ctx, cs); err == nil || !strings.Contains(err.Error(), "logs deploy/metrics-server") {
		t.Errorf("without conditions: %v, want an error naming the logs", err)
	}
	s := srv.objs[APIServiceName]
	s.Status.Conditions = []apiregistrationv1.APIServiceCondition{{Type: apiregistrationv1.Available, Status: apiregistrationv1.ConditionFalse,
		Reason: "MissingEndpoints", Message: "endpoints for service/metrics-server in \"kube-system\" have no addresses"}}
	err := Available(ctx, cs)
	if err == nil || !strings.Contains(err.Error(), "MissingEndpoints") || !strings.Contains(err.Error(), "have no addresses") ||
		!strings.Contains(err.Error(), "kubectl -n kube-system logs deploy/metrics-server") {
		t.Errorf("Available=False: %v, want the reason, the message and the logs command", err)
	}
	s.Status.Conditions[0] = apiregistrationv1.APIServiceCondition{Type: apiregistrationv1.Available, Status: apiregistrationv1.ConditionTrue, Reason: "Passed"}
	if err := Available(ctx, cs); err != nil {
		t.Errorf("Available=True: %v", err)
	}
}
