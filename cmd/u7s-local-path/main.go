// Command u7s-local-path provisions the cluster's default storage on the node it runs on: a
// DaemonSet's pod (manifests/u7s-local-path.yml, installed by init) that makes a directory for
// each claim scheduled to its node and removes it when the claim goes. Package
// internal/localpath/provisioner does the work; this is flags and the call.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v11/controller"

	"github.com/u7s/u7s/internal/localpath/provisioner"
)

func main() {
	p := &provisioner.Provisioner{}
	flag.StringVar(&p.Node, "node", os.Getenv("NODE_NAME"), "the Node this pod runs on (default $NODE_NAME)")
	flag.StringVar(&p.Dir, "dir", "", "the node's volumes directory, mounted at the same path")
	klog.InitFlags(nil)
	flag.Parse()
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "u7s-local-path: error:", err)
		os.Exit(1)
	}
}

func run(p *provisioner.Provisioner) error {
	if p.Node == "" || p.Dir == "" {
		return fmt.Errorf("--node and --dir are required")
	}
	if fi, err := os.Stat(p.Dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("the volumes directory %s is not mounted in the pod: %v", p.Dir, err)
	}
	rc, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("u7s-local-path runs in a pod, with its service account: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	p.Client = cs
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	klog.Infof("provisioning %s volumes of node %s in %s", provisioner.Name, p.Node, p.Dir)
	// One provisioner per node, each for its own node's claims (Provisioner.ShouldProvision):
	// no leader election. Claims are few and a retry is cheap: a short resync.
	pc := controller.NewProvisionController(ctx, cs, provisioner.Name, p,
		controller.LeaderElection(false),
		controller.ResyncPeriod(time.Minute),
		controller.FailedProvisionThreshold(0),
		controller.FailedDeleteThreshold(0),
	)
	pc.Run(ctx)
	return nil
}
