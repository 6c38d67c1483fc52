// Package metricsserver deploys metrics-server into a u7s cluster: the objects of
// manifests/metrics-server.yml with the image u7s chose. metrics-server serves the Metrics
// API (metrics.k8s.io), the pods' and nodes' CPU and memory use that kubectl top shows and
// that HorizontalPodAutoscalers on CPU and memory scale by; without it both fail.
package metricsserver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"

	"github.com/u7s/u7s/internal/apply"
	"github.com/u7s/u7s/manifests"
)

const (
	// Namespace holds metrics-server's Deployment, Service and ServiceAccount.
	Namespace = "kube-system"
	// DeploymentName is metrics-server's Deployment, its Service and its container.
	DeploymentName = "metrics-server"
	// APIServiceName registers the Metrics API with the API server's aggregator.
	APIServiceName = "v1beta1.metrics.k8s.io"
)

// Options are what the objects depend on.
type Options struct {
	// Image is metrics-server's image, e.g. registry.local/k8s-p10/metrics-server:v0.8.0.
	Image string
}

func (o Options) validate() error {
	if o.Image == "" {
		return errors.New("metrics-server: no image given: pass <U7S_REGISTRY>/metrics-server:<tag>, e.g. registry.local/k8s-p10/metrics-server:v0.8.0")
	}
	if strings.ContainsAny(o.Image, " \t\n") {
		return fmt.Errorf("metrics-server: image %q contains white space: pass a reference such as registry.local/k8s-p10/metrics-server:v0.8.0", o.Image)
	}
	return nil
}

// Objects returns metrics-server's objects in the order to create them, configured by o.
func Objects(o Options) ([]runtime.Object, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	objs, err := apply.Decode(manifests.MetricsServer)
	if err != nil {
		return nil, err
	}
	for _, obj := range objs {
		if d, ok := obj.(*appsv1.Deployment); ok && d.Name == DeploymentName {
			cs := d.Spec.Template.Spec.Containers
			if len(cs) == 0 {
				return nil, fmt.Errorf("manifest %s: Deployment %s has no container", manifests.MetricsServer, DeploymentName)
			}
			for i := range cs {
				cs[i].Image = o.Image
			}
			return objs, nil
		}
	}
	return nil, fmt.Errorf("manifest %s lacks Deployment %s", manifests.MetricsServer, DeploymentName)
}

// Apply creates metrics-server's objects, or updates them where they exist.
func Apply(ctx context.Context, cs kubernetes.Interface, o Options) error {
	objs, err := Objects(o)
	if err != nil {
		return err
	}
	if err := apply.Objects(ctx, cs, objs); err != nil {
		return fmt.Errorf("applying metrics-server: %w", err)
	}
	return nil
}

// Available returns nil when the API server serves the Metrics API: its APIService has the
// condition Available=True, which the aggregator sets once metrics-server answers. The error
// says why not and what to look at.
func Available(ctx context.Context, cs kubernetes.Interface) error {
	logs := fmt.Sprintf("kubectl -n %s logs deploy/%s", Namespace, DeploymentName)
	s, err := apply.APIService(ctx, cs, APIServiceName)
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the Metrics API is not registered: APIService %s does not exist (metrics-server is not installed)", APIServiceName)
	}
	if err != nil {
		return fmt.Errorf("reading APIService %s: %w", APIServiceName, err)
	}
	for _, c := range s.Status.Conditions {
		if c.Type != apiregistrationv1.Available {
			continue
		}
		if c.Status == apiregistrationv1.ConditionTrue {
			return nil
		}
		return fmt.Errorf("the Metrics API is not available: APIService %s is Available=%s (%s: %s): %s",
			APIServiceName, c.Status, c.Reason, c.Message, logs)
	}
	return fmt.Errorf("the Metrics API is not available yet: APIService %s has no Available condition: %s", APIServiceName, logs)
}
