// Package systemd holds u7s's systemd units, embedded in the binary: init and join install
// them where the distribution's package did not.
package systemd

import _ "embed"

// Unit is one unit file of u7s.
type Unit struct {
	Name string
	File []byte
}

var (
	//go:embed u7s.service
	nodeFile []byte
	//go:embed u7s-etcd-snapshot.service
	snapshotService []byte
	//go:embed u7s-etcd-snapshot.timer
	snapshotTimer []byte
	//go:embed u7s-maintenance.service
	maintenanceService []byte
	//go:embed u7s-maintenance.timer
	maintenanceTimer []byte
	//go:embed u7s-watch.service
	watchService []byte
	//go:embed u7s-watch.timer
	watchTimer []byte
)

var (
	// Node is the node's service: the supervisor, its namespace, cri-o and the kubelet.
	Node = Unit{"u7s.service", nodeFile}
	// SnapshotService takes a scheduled etcd snapshot on a control plane; SnapshotTimer starts it.
	SnapshotService = Unit{"u7s-etcd-snapshot.service", snapshotService}
	SnapshotTimer   = Unit{"u7s-etcd-snapshot.timer", snapshotTimer}
	// MaintenanceService runs the node's coordinated-reboot agent; MaintenanceTimer starts it.
	MaintenanceService = Unit{"u7s-maintenance.service", maintenanceService}
	MaintenanceTimer   = Unit{"u7s-maintenance.timer", maintenanceTimer}
	// WatchService runs u7s check all; WatchTimer starts it hourly.
	WatchService = Unit{"u7s-watch.service", watchService}
	WatchTimer   = Unit{"u7s-watch.timer", watchTimer}
)

// All are every unit, as the packages install them.
var All = []Unit{Node, SnapshotService, SnapshotTimer, MaintenanceService, MaintenanceTimer, WatchService, WatchTimer}

// Every are the units every node enables beside Node: the coordinated-reboot agent.
var Every = []Unit{MaintenanceService, MaintenanceTimer}

// Watch are the units of the watch, which every node enables.
var Watch = []Unit{WatchService, WatchTimer}

// ControlPlane are the units a control plane enables beside Node: its scheduled snapshots
// (the timer, with the service it starts).
var ControlPlane = []Unit{SnapshotService, SnapshotTimer}
