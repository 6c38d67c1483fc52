// Package controller runs, in a pod on each node, the engine that enforces NetworkPolicy:
// kube-router's network policy controller, only its firewall part (no routing, no service
// proxy), as k3s embeds it. It writes iptables (iptables-nft) rules and ipsets in the node's
// network namespace, the one the pod shares (hostNetwork); in a u7s node that is the namespace
// of u7s-admin's user namespace, so it needs no privilege on the host.
package controller

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"github.com/cloudnativelabs/kube-router/v2/pkg/utils"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// Config is what the controller needs to know of its node and cluster.
type Config struct {
	// NodeName is the Node the pod runs on: its policies guard the pods of that node.
	NodeName string
	// ServiceCIDR is the cluster's Service network (kube-apiserver's --service-cluster-ip-range).
	ServiceCIDR string
	// NodePortRange is the cluster's NodePort range, "30000-32767".
	NodePortRange string
	// HealthPort serves /healthz (200 while the controller syncs) on the node's network.
	HealthPort uint16
	// SyncPeriod is how often the rules are rewritten in full, besides on every change.
	SyncPeriod time.Duration
	// CacheSyncTimeout bounds the first listing of pods, namespaces and policies.
	CacheSyncTimeout time.Duration
}

// heartbeats is the capacity of the health channel, kube-router's own.
const heartbeats = 10

// CheckIPSet fails when this network namespace cannot hold ipsets: without them no policy can
// be enforced, and a node that says nothing would let every pod reach every other (k3s only
// logs it and goes on).
func CheckIPSet() error {
	set, err := utils.NewIPSet(false)
	if err == nil {
		err = set.Save()
	}
	if err != nil {
		return fmt.Errorf("ipset does not work here, so NetworkPolicy cannot be enforced on this node: %w; "+
			"the host's kernel needs ip_set with hash:ip, hash:net and hash:ip,port sets, and xt_set "+
			"(CONFIG_IP_SET, CONFIG_NETFILTER_XT_SET: load ip_set and xt_set, or use a kernel with them)", err)
	}
	return nil
}

// Run enforces NetworkPolicy for the pods of cfg.NodeName until ctx ends.
func Run(ctx context.Context, cs kubernetes.Interface, cfg Config) error {
	if cfg.NodeName == "" || cfg.ServiceCIDR == "" {
		return errors.New("the node name and the Service network are required (--hostname-override, --service-cluster-ip-range)")
	}
	if err := CheckIPSet(); err != nil {
		return err
	}
	kc := options.NewKubeRouterConfig()
	kc.RunFirewall, kc.RunRouter, kc.RunServiceProxy = true, false, false
	kc.EnableIPv4, kc.EnableIPv6 = true, false
	kc.ClusterIPCIDRs = []string{cfg.ServiceCIDR}
	kc.HostnameOverride = cfg.NodeName
	if cfg.NodePortRange != "" {
		kc.NodePortRange = cfg.NodePortRange
	}
	if cfg.SyncPeriod > 0 {
		kc.IPTablesSyncPeriod = cfg.SyncPeriod
	}
	if cfg.CacheSyncTimeout > 0 {
		kc.CacheSyncTimeout = cfg.CacheSyncTimeout
	}
	kc.HealthPort = cfg.HealthPort

	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)

	health := make(chan *healthcheck.ControllerHeartbeat, heartbeats)
	hc, err := healthcheck.NewHealthController(kc)
	if err != nil {
		return fmt.Errorf("health controller: %w", err)
	}
	if cfg.HealthPort > 0 {
		// Fail now, with the port named, rather than in kube-router's server goroutine.
		if err := utils.TCPAddressBindable("", cfg.HealthPort); err != nil {
			return fmt.Errorf("health port %s is taken on this node: %w", strconv.Itoa(int(cfg.HealthPort)), err)
		}
		wg.Add(1)
		go hc.RunServer(stop, &wg)
	}

	factory := informers.NewSharedInformerFactory(cs, 0)
	pods := factory.Core().V1().Pods().Informer()
	namespaces := factory.Core().V1().Namespaces().Informer()
	policies := factory.Networking().V1().NetworkPolicies().Informer()
	factory.Start(stop)
	syncCtx, cancel := context.WithTimeout(ctx, kc.CacheSyncTimeout)
	synced := factory.WaitForCacheSync(syncCtx.Done())
	cancel()
	for typ, ok := range synced {
		if !ok {
			return fmt.Errorf("listing %v from the API server took over %s", typ, kc.CacheSyncTimeout)
		}
	}
	hc.SetAlive()
	wg.Add(1)
	go hc.RunCheck(health, stop, &wg)

	ipt, sets, err := netpol.NewIPTablesHandlers(kc)
	if err != nil {
		return fmt.Errorf("iptables and ipset: %w", err)
	}
	npc, err := netpol.NewNetworkPolicyController(cs, kc, pods, policies, namespaces, &sync.Mutex{}, ipt, sets)
	if err != nil {
		return fmt.Errorf("network policy controller: %w", err)
	}
	if _, err := pods.AddEventHandler(npc.PodEventHandler); err != nil {
		return err
	}
	if _, err := namespaces.AddEventHandler(npc.NamespaceEventHandler); err != nil {
		return err
	}
	if _, err := policies.AddEventHandler(npc.NetworkPolicyEventHandler); err != nil {
		return err
	}
	wg.Add(1)
	go npc.Run(health, stop, &wg)
	klog.InfoS("Enforcing NetworkPolicy", "node", cfg.NodeName, "serviceCIDR", cfg.ServiceCIDR,
		"nodePortRange", kc.NodePortRange, "syncPeriod", kc.IPTablesSyncPeriod)
	<-ctx.Done()
	klog.Info("Stopping: the rules stay until the node's network namespace goes")
	return nil
}
