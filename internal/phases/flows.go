package phases

import "k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow"

// The flows: each is its phases in order. init and join share every phase but kubeadm's.

// Init bootstraps the first control plane.
func Init() []workflow.Phase {
	return []workflow.Phase{
		preflightPhase(),
		hostPhase(),
		cgroupsPhase(),
		configPhase(),
		releasePhase(),
		startPhase(),
		kubeadmPhase(FlowInit),
		uploadCertsPhase(),
		networkPhase(true),
		policyPhase(),
		addonsPhase(),
		waitPhase(),
		timersPhase(),
		summaryPhase(true),
	}
}

// Join adds a worker, or with --control-plane a control plane with a stacked etcd member.
func Join() []workflow.Phase {
	return []workflow.Phase{
		preflightPhase(),
		hostPhase(),
		cgroupsPhase(),
		configPhase(),
		releasePhase(),
		startPhase(),
		kubeadmPhase(FlowJoin),
		networkPhase(false),
		waitPhase(),
		timersPhase(),
		summaryPhase(false),
	}
}

// Start starts a stopped node again (after u7s stop, or where systemd does not run it).
func Start() []workflow.Phase {
	return []workflow.Phase{startPhase(), waitPhase()}
}

// Reset stops the node and undoes what init or join recorded.
func Reset() []workflow.Phase {
	return []workflow.Phase{
		leavePhase(),
		stopPhase(),
		cleanupPhase(),
	}
}

// Restore puts a control plane's etcd back to a snapshot (u7s etcd snapshot restore): other
// control planes leave before (u7s reset) and join again after (u7s join --control-plane); their
// members belong to the old cluster, their Nodes in the snapshot are removed. Interrupted, it
// goes on with --skip-phases (the phases done).
func Restore() []workflow.Phase {
	return []workflow.Phase{
		restoreCheckPhase(),
		restoreStopPhase(),
		restoreDataPhase(),
		restoreStartPhase(),
		restoreForgetPhase(),
	}
}

// CertsRenew renews a control plane's certificates and restarts it (u7s certs renew).
func CertsRenew() []workflow.Phase {
	return []workflow.Phase{certsRenewPhase(), certsRestartPhase()}
}
