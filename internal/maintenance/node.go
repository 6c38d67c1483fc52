package maintenance

import (
	"fmt"
	"log"
	"os"
	"os/exec"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/kube"
	"github.com/u7s/u7s/internal/paths"
)

// NodeAgent is the Agent of this host's node n, as u7s-maintenance.timer runs it (root): the
// node's own credentials, its reboot window, paths.MaintenanceMarker, and systemd's reboot.
func NodeAgent(n *config.Node) (*Agent, error) {
	w, err := ParseWindow(n.RebootWindow)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config.Path, err)
	}
	cs, err := kube.Node()
	if err != nil {
		return nil, err
	}
	a := nodeFiles()
	a.Client, a.Node, a.Window = cs, n.NodeName, w
	a.Reboot = func() error { return exec.Command("systemctl", "reboot").Run() }
	a.Logf = log.Printf
	return a, nil
}

// nodeFiles is the node's Agent without its client: the files it watches and keeps, which
// u7s-maintenance.service's conditions name too.
func nodeFiles() *Agent {
	return &Agent{Sentinel: RebootRequired, Marker: paths.MaintenanceMarker, Asked: paths.MaintenanceAsked}
}

// Status is u7s status's line about this host's coordinated reboots.
func Status(n *config.Node) string {
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	window := n.RebootWindow
	if window == "" {
		window = "any time"
	}
	switch {
	case n.NoCoordinatedReboots:
		return "coordinated reboots off"
	case exists(paths.MaintenanceMarker):
		return string(Returning)
	case exists(RebootRequired):
		return "reboot pending (" + RebootRequired + "): waiting for the cluster-wide lock and the window " + window
	}
	return "no reboot pending (window " + window + ")"
}
