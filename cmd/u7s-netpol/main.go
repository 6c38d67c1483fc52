// Command u7s-netpol enforces NetworkPolicy on the node it runs on: a DaemonSet's pod in the
// node's network namespace (manifests/u7s-netpol.yml, installed by init). Package
// internal/netpol/controller does the work; this is flags and the call. The flags are
// kube-router's own names for the same settings, so that one argument list serves this image
// and upstream's kube-router image (the native registry's).
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

	"github.com/u7s/u7s/internal/netpol/controller"
)

func main() {
	var cfg controller.Config
	var health uint
	flag.StringVar(&cfg.NodeName, "hostname-override", os.Getenv("NODE_NAME"), "the Node this pod runs on (default $NODE_NAME)")
	flag.StringVar(&cfg.ServiceCIDR, "service-cluster-ip-range", "", "the cluster's Service network, as kube-apiserver's")
	flag.StringVar(&cfg.NodePortRange, "service-node-port-range", "30000-32767", "the cluster's NodePort range")
	flag.UintVar(&health, "health-port", 0, "serve /healthz on this port of the node's network (0: none)")
	flag.DurationVar(&cfg.SyncPeriod, "iptables-sync-period", 5*time.Minute, "how often the rules are rewritten in full, besides on every change")
	flag.DurationVar(&cfg.CacheSyncTimeout, "cache-sync-timeout", 5*time.Minute, "how long the first listing of pods, namespaces and policies may take")
	// kube-router's: only its firewall runs here, whatever they say.
	firewall := flag.Bool("run-firewall", true, "must be true: this runs kube-router's firewall only")
	router := flag.Bool("run-router", false, "must be false")
	proxy := flag.Bool("run-service-proxy", false, "must be false")
	check := flag.Bool("check", false, "only check that ipset works in this network namespace, and exit")
	klog.InitFlags(nil)
	flag.Parse()
	if err := run(cfg, health, *check, *firewall && !*router && !*proxy); err != nil {
		fmt.Fprintln(os.Stderr, "u7s-netpol: error:", err)
		os.Exit(1)
	}
}

func run(cfg controller.Config, health uint, check, firewallOnly bool) error {
	if !firewallOnly {
		return fmt.Errorf("u7s-netpol runs kube-router's firewall only: --run-firewall=true --run-router=false --run-service-proxy=false")
	}
	if check {
		return controller.CheckIPSet()
	}
	if health > 65535 {
		return fmt.Errorf("--health-port %d is not a port", health)
	}
	cfg.HealthPort = uint16(health)
	rc, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("u7s-netpol runs in a pod, with its service account: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return controller.Run(ctx, cs, cfg)
}
