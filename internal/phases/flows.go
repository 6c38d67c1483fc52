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
		networkPhase(),
		waitPhase(),
		timersPhase(),
		summaryPhase(),
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
		networkPhase(),
		waitPhase(),
		timersPhase(),
		summaryPhase(),
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
