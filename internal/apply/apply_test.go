package apply

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/ptr"

	"github.com/u7s/u7s/manifests"
)

// The embedded manifests decode into typed objects, the APIService of metrics-server's too
// (client-go's scheme does not know it).
func TestDecode(t *testing.T) {
	objs, err := Decode(manifests.MetricsServer)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, obj := range objs {
		switch obj.(type) {
		case *apiregistrationv1.APIService:
			kinds["APIService"] = true
		case *appsv1.Deployment:
			kinds["Deployment"] = true
		case *corev1.Service:
			kinds["Service"] = true
		case *rbacv1.RoleBinding:
			kinds["RoleBinding"] = true
		}
	}
	if len(kinds) != 4 {
		t.Errorf("decoded %v, want an APIService, a Deployment, a Service and a RoleBinding", kinds)
	}
	if _, err := Decode("missing.yml"); err == nil {
		t.Error("Decode of a missing manifest succeeded")
	}
}

func deployment(image string) *appsv1.Deployment {
	labels := map[string]string{"app": "d"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "ns", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
			},
		},
	}
}

// Objects creates what is missing and updates what exists, keeping labels others added.
func TestObjectsCreateAndUpdate(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	sc := &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: "local", Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
		Provisioner: "example.com/local",
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}},
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "r"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "sa", Namespace: "ns"}},
	}
	if err := Objects(ctx, cs, []runtime.Object{deployment("img:1"), sc, role, rb}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.StorageV1().StorageClasses().Get(ctx, "local", metav1.GetOptions{}); err != nil {
		t.Errorf("StorageClass: %v", err)
	}
	if _, err := cs.RbacV1().Roles("ns").Get(ctx, "r", metav1.GetOptions{}); err != nil {
		t.Errorf("Role: %v", err)
	}
	if _, err := cs.RbacV1().RoleBindings("ns").Get(ctx, "r", metav1.GetOptions{}); err != nil {
		t.Errorf("RoleBinding: %v", err)
	}

	// Someone labels the Deployment; an upgrade changes its image.
	d, err := cs.AppsV1().Deployments("ns").Get(ctx, "d", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Labels["team"] = "ops"
	if _, err := cs.AppsV1().Deployments("ns").Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sc2 := sc.DeepCopy()
	sc2.Labels = map[string]string{"u7s": "yes"}
	if err := Objects(ctx, cs, []runtime.Object{deployment("img:2"), sc2}); err != nil {
		t.Fatal(err)
	}
	d, err = cs.AppsV1().Deployments("ns").Get(ctx, "d", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Spec.Template.Spec.Containers[0].Image; got != "img:2" {
		t.Errorf("Deployment image %q after the update, want img:2", got)
	}
	if d.Labels["team"] != "ops" || d.Labels["app"] != "d" {
		t.Errorf("Deployment labels %v, want team=ops kept", d.Labels)
	}
	got, err := cs.StorageV1().StorageClasses().Get(ctx, "local", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels["u7s"] != "yes" || got.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" {
		t.Errorf("StorageClass labels %v, annotations %v after the update", got.Labels, got.Annotations)
	}

	if err := Objects(ctx, cs, []runtime.Object{&corev1.Pod{}}); err == nil {
		t.Error("Objects applied a Pod, which it does not know")
	}
}

// An update of a Service keeps the addresses the API server allocated: they are immutable.
func TestServiceUpdateKeepsClusterIP(t *testing.T) {
	ctx := context.Background()
	cur := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns"},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
	cs := fake.NewClientset(cur)
	want := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "s"},
			Ports:    []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromString("https")}},
		},
	}
	if err := Objects(ctx, cs, []runtime.Object{want}); err != nil {
		t.Fatal(err)
	}
	got, err := cs.CoreV1().Services("ns").Get(ctx, "s", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.ClusterIP != "10.96.0.20" || len(got.Spec.ClusterIPs) != 1 || got.Spec.ClusterIPs[0] != "10.96.0.20" {
		t.Errorf("clusterIP %q, clusterIPs %v after the update, want 10.96.0.20 kept", got.Spec.ClusterIP, got.Spec.ClusterIPs)
	}
	if len(got.Spec.Ports) != 1 || got.Spec.Ports[0].Port != 443 || got.Spec.Selector["app"] != "s" {
		t.Errorf("spec %+v, want the new port and selector", got.Spec)
	}
}

// apiServiceServer serves /apis/apiregistration.k8s.io/v1/apiservices as the API server
// does, as far as Objects and APIService use it.
type apiServiceServer struct {
	mu       sync.Mutex
	objs     map[string]*apiregistrationv1.APIService
	rv       int
	requests []string // method path[?fieldManager=...]
}

func (s *apiServiceServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := r.Method + " " + r.URL.Path
	if fm := r.URL.Query().Get("fieldManager"); fm != "" {
		req += "?fieldManager=" + fm
	}
	s.requests = append(s.requests, req)
	gr := schema.GroupResource{Group: apiregistrationv1.GroupName, Resource: "apiservices"}
	name, _ := strings.CutPrefix(strings.TrimPrefix(r.URL.Path, apiServicesPath), "/")
	var in apiregistrationv1.APIService
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &in); err != nil || in.Kind != "APIService" || in.APIVersion != "apiregistration.k8s.io/v1" ||
			r.Header.Get("Content-Type") != "application/json" {
			writeStatus(w, apierrors.NewBadRequest("bad body "+string(body)))
			return
		}
	}
	switch {
	case r.Method == http.MethodPost && name == "":
		if s.objs[in.Name] != nil {
			writeStatus(w, apierrors.NewAlreadyExists(gr, in.Name))
			return
		}
		s.store(&in)
		writeJSON(w, http.StatusCreated, &in)
	case r.Method == http.MethodGet && name != "":
		if s.objs[name] == nil {
			writeStatus(w, apierrors.NewNotFound(gr, name))
			return
		}
		writeJSON(w, http.StatusOK, s.objs[name])
	case r.Method == http.MethodPut && name == in.Name:
		cur := s.objs[name]
		if cur == nil {
			writeStatus(w, apierrors.NewNotFound(gr, name))
			return
		}
		if in.ResourceVersion != cur.ResourceVersion {
			writeStatus(w, apierrors.NewConflict(gr, name, nil))
			return
		}
		s.store(&in)
		writeJSON(w, http.StatusOK, &in)
	default:
		writeStatus(w, apierrors.NewMethodNotSupported(gr, r.Method))
	}
}

func (s *apiServiceServer) store(obj *apiregistrationv1.APIService) {
	s.rv++
	obj.ResourceVersion = strconv.Itoa(s.rv)
	s.objs[obj.Name] = obj
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

// withDiscovery is a fake clientset whose discovery client talks to a real (test) server, as
// a clientset of a rest.Config does.
type withDiscovery struct {
	*fake.Clientset
	d discovery.DiscoveryInterface
}

func (c withDiscovery) Discovery() discovery.DiscoveryInterface { return c.d }

func apiServiceClientset(t *testing.T) (withDiscovery, *apiServiceServer) {
	s := &apiServiceServer{objs: map[string]*apiregistrationv1.APIService{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	d, err := discovery.NewDiscoveryClientForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return withDiscovery{Clientset: fake.NewClientset(), d: d}, s
}

func apiService(priority int32) *apiregistrationv1.APIService {
	return &apiregistrationv1.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: "v1beta1.metrics.k8s.io", Labels: map[string]string{"k8s-app": "metrics-server"}},
		Spec: apiregistrationv1.APIServiceSpec{
			Service:               &apiregistrationv1.ServiceReference{Namespace: "kube-system", Name: "metrics-server", Port: ptr.To[int32](443)},
			Group:                 "metrics.k8s.io",
			Version:               "v1beta1",
			InsecureSkipTLSVerify: true,
			GroupPriorityMinimum:  priority,
			VersionPriority:       100,
		},
	}
}

// An APIService is created through the REST client and, when it exists, updated at the
// resourceVersion read, as u7s's field manager.
func TestAPIService(t *testing.T) {
	ctx := context.Background()
	cs, srv := apiServiceClientset(t)
	if _, err := APIService(ctx, cs, "v1beta1.metrics.k8s.io"); !apierrors.IsNotFound(err) {
		t.Errorf("APIService before it exists: %v, want NotFound", err)
	}
	if err := Objects(ctx, cs, []runtime.Object{apiService(100)}); err != nil {
		t.Fatal(err)
	}
	srv.objs["v1beta1.metrics.k8s.io"].Labels["other"] = "x"
	if err := Objects(ctx, cs, []runtime.Object{apiService(200)}); err != nil {
		t.Fatal(err)
	}
	got, err := APIService(ctx, cs, "v1beta1.metrics.k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.GroupPriorityMinimum != 200 || got.Spec.Service == nil || got.Spec.Service.Name != "metrics-server" || !got.Spec.InsecureSkipTLSVerify {
		t.Errorf("APIService spec %+v after the update", got.Spec)
	}
	if got.Labels["other"] != "x" || got.Labels["k8s-app"] != "metrics-server" {
		t.Errorf("labels %v, want other=x kept", got.Labels)
	}
	want := []string{
		"GET " + apiServicesPath + "/v1beta1.metrics.k8s.io",
		"POST " + apiServicesPath + "?fieldManager=u7s",
		"POST " + apiServicesPath + "?fieldManager=u7s",
		"GET " + apiServicesPath + "/v1beta1.metrics.k8s.io",
		"PUT " + apiServicesPath + "/v1beta1.metrics.k8s.io?fieldManager=u7s",
		"GET " + apiServicesPath + "/v1beta1.metrics.k8s.io",
	}
	if strings.Join(srv.requests, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests\n%s\nwant\n%s", strings.Join(srv.requests, "\n"), strings.Join(want, "\n"))
	}
}

// A clientset without a REST client (client-go's fake) gets an error, not a panic.
func TestAPIServiceWithoutRESTClient(t *testing.T) {
	err := Objects(context.Background(), fake.NewClientset(), []runtime.Object{apiService(100)})
	if err == nil || !strings.Contains(err.Error(), "REST client") {
		t.Errorf("error %v, want one saying there is no REST client", err)
	}
}
