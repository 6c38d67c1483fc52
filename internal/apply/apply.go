// Package apply puts the objects of u7s's embedded manifests (package manifests) into a cluster:
// it decodes them into typed objects, which the packages that own them (flannel, netpol,
// metricsserver) set up, and creates or updates each one as u7s's field manager.
package apply

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/u7s/u7s/manifests"
)

// FieldManager is the manager u7s's writes are recorded under.
const FieldManager = "u7s"

// apiServicesPath is where the API server serves APIServices (the aggregator's API, which
// client-go's clientset lacks).
const apiServicesPath = "/apis/apiregistration.k8s.io/v1/apiservices"

// objScheme knows client-go's types and, for the Metrics API's registration, APIService.
var (
	objScheme  = newScheme()
	codecs     = serializer.NewCodecFactory(objScheme)
	paramCodec = runtime.NewParameterCodec(objScheme)
)

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(scheme.AddToScheme(s))
	utilruntime.Must(apiregistrationv1.AddToScheme(s))
	return s
}

// Decode reads the embedded multi-document manifest name into typed objects, in its order.
func Decode(name string) ([]runtime.Object, error) {
	data, err := manifests.Get(name)
	if err != nil {
		return nil, err
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []runtime.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", name, err)
		}
		if isEmptyYAML(doc) {
			continue
		}
		obj, _, err := codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", name, err)
		}
		objs = append(objs, obj)
	}
}

// Objects creates each of objs, in order, or updates it where it exists.
func Objects(ctx context.Context, cs kubernetes.Interface, objs []runtime.Object) error {
	for _, obj := range objs {
		var err error
		switch obj := obj.(type) {
		case *corev1.Namespace:
			err = createOrUpdate(ctx, cs.CoreV1().Namespaces(), obj)
		case *rbacv1.ClusterRole:
			err = createOrUpdate(ctx, cs.RbacV1().ClusterRoles(), obj)
		case *rbacv1.ClusterRoleBinding:
			err = createOrUpdate(ctx, cs.RbacV1().ClusterRoleBindings(), obj)
		case *corev1.ServiceAccount:
			err = createOrUpdate(ctx, cs.CoreV1().ServiceAccounts(obj.Namespace), obj)
		case *corev1.ConfigMap:
			err = createOrUpdate(ctx, cs.CoreV1().ConfigMaps(obj.Namespace), obj)
		case *rbacv1.Role:
			err = createOrUpdate(ctx, cs.RbacV1().Roles(obj.Namespace), obj)
		case *rbacv1.RoleBinding:
			err = createOrUpdate(ctx, cs.RbacV1().RoleBindings(obj.Namespace), obj)
		case *corev1.Service:
			err = createOrUpdate(ctx, cs.CoreV1().Services(obj.Namespace), obj, keepClusterIPs)
		case *appsv1.DaemonSet:
			err = createOrUpdate(ctx, cs.AppsV1().DaemonSets(obj.Namespace), obj)
		case *appsv1.Deployment:
			err = createOrUpdate(ctx, cs.AppsV1().Deployments(obj.Namespace), obj)
		case *storagev1.StorageClass:
			err = createOrUpdate(ctx, cs.StorageV1().StorageClasses(), obj)
		case *apiregistrationv1.APIService:
			var c apiServices
			if c, err = apiServicesOf(cs); err == nil {
				err = createOrUpdate(ctx, c, obj)
			}
		default:
			err = fmt.Errorf("u7s cannot apply a %T", obj)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// typedClient is the part of a client-go typed client that createOrUpdate uses.
type typedClient[T metav1.Object] interface {
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

func createOrUpdate[T interface {
	metav1.Object
	runtime.Object
}](ctx context.Context, c typedClient[T], obj T, keep ...func(cur, want T)) error {
	kind := fmt.Sprintf("%T", obj)
	if gvks, _, err := objScheme.ObjectKinds(obj); err == nil && len(gvks) > 0 {
		kind = gvks[0].Kind
	}
	_, err := c.Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager})
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s %s: %w", kind, obj.GetName(), err)
	}
	cur, err := c.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading %s %s: %w", kind, obj.GetName(), err)
	}
	obj.SetResourceVersion(cur.GetResourceVersion())
	obj.SetLabels(merged(cur.GetLabels(), obj.GetLabels()))
	obj.SetAnnotations(merged(cur.GetAnnotations(), obj.GetAnnotations()))
	for _, k := range keep {
		k(cur, obj)
	}
	if _, err := c.Update(ctx, obj, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("updating %s %s: %w", kind, obj.GetName(), err)
	}
	return nil
}

// keepClusterIPs carries the addresses the API server allocated to Service cur over to want,
// which leaves them empty: spec.clusterIP(s) are immutable, and an update must not drop them.
func keepClusterIPs(cur, want *corev1.Service) {
	if want.Spec.ClusterIP == "" && len(want.Spec.ClusterIPs) == 0 {
		want.Spec.ClusterIP = cur.Spec.ClusterIP
		want.Spec.ClusterIPs = cur.Spec.ClusterIPs
	}
}

// apiServices is a typedClient of APIServices over the API server's untyped REST client:
// u7s's callers hold a kubernetes.Interface, not the aggregator's clientset.
type apiServices struct{ rc rest.Interface }

func apiServicesOf(cs kubernetes.Interface) (apiServices, error) {
	rc := cs.Discovery().RESTClient()
	if r, ok := rc.(*rest.RESTClient); rc == nil || ok && r == nil {
		return apiServices{}, errors.New("the Kubernetes client has no REST client to reach APIServices (" + apiServicesPath + ")")
	}
	return apiServices{rc: rc}, nil
}

func (c apiServices) Create(ctx context.Context, obj *apiregistrationv1.APIService, opts metav1.CreateOptions) (*apiregistrationv1.APIService, error) {
	body, err := runtime.Encode(codecs.LegacyCodec(apiregistrationv1.SchemeGroupVersion), obj)
	if err != nil {
		return nil, err
	}
	return decodeAPIService(c.rc.Post().AbsPath(apiServicesPath).SpecificallyVersionedParams(&opts, paramCodec, apiregistrationv1.SchemeGroupVersion).
		SetHeader("Content-Type", runtime.ContentTypeJSON).Body(body).Do(ctx).Raw())
}

func (c apiServices) Get(ctx context.Context, name string, opts metav1.GetOptions) (*apiregistrationv1.APIService, error) {
	return decodeAPIService(c.rc.Get().AbsPath(apiServicesPath, name).SpecificallyVersionedParams(&opts, paramCodec, apiregistrationv1.SchemeGroupVersion).Do(ctx).Raw())
}

func (c apiServices) Update(ctx context.Context, obj *apiregistrationv1.APIService, opts metav1.UpdateOptions) (*apiregistrationv1.APIService, error) {
	body, err := runtime.Encode(codecs.LegacyCodec(apiregistrationv1.SchemeGroupVersion), obj)
	if err != nil {
		return nil, err
	}
	return decodeAPIService(c.rc.Put().AbsPath(apiServicesPath, obj.Name).SpecificallyVersionedParams(&opts, paramCodec, apiregistrationv1.SchemeGroupVersion).
		SetHeader("Content-Type", runtime.ContentTypeJSON).Body(body).Do(ctx).Raw())
}

// decodeAPIService decodes the API server's answer raw, err to a request about an APIService.
func decodeAPIService(raw []byte, err error) (*apiregistrationv1.APIService, error) {
	if err != nil {
		return nil, err
	}
	obj, _, err := codecs.UniversalDeserializer().Decode(raw, nil, &apiregistrationv1.APIService{})
	if err != nil {
		return nil, fmt.Errorf("decoding an APIService: %w", err)
	}
	s, ok := obj.(*apiregistrationv1.APIService)
	if !ok {
		return nil, fmt.Errorf("the API server answered a %T, not an APIService", obj)
	}
	return s, nil
}

// APIService reads the APIService name (e.g. v1beta1.metrics.k8s.io) through cs's REST
// client; an absent one is an error that apierrors.IsNotFound recognises.
func APIService(ctx context.Context, cs kubernetes.Interface, name string) (*apiregistrationv1.APIService, error) {
	c, err := apiServicesOf(cs)
	if err != nil {
		return nil, err
	}
	return c.Get(ctx, name, metav1.GetOptions{})
}

// isEmptyYAML reports a document with nothing but comments.
func isEmptyYAML(doc []byte) bool {
	var v any
	return yaml.Unmarshal(doc, &v) == nil && v == nil
}

// merged returns cur overlaid with want: labels and annotations that others (the API
// server, kubectl rollout restart) added survive an update.
func merged(cur, want map[string]string) map[string]string {
	if len(cur) == 0 {
		return want
	}
	out := maps.Clone(cur)
	maps.Copy(out, want)
	return out
}

// SetAPIServer points container c at the API server hostPort (HOST:PORT) instead of the
// kubernetes Service: the node's network components run before the Service network works.
// Explicit variables win over the ones the kubelet injects for the Service.
func SetAPIServer(c *corev1.Container, hostPort string) error {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return fmt.Errorf("API server %q: want HOST:PORT", hostPort)
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: host},
		corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: port})
	return nil
}
