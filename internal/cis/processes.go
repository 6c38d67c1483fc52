package cis

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// required are the processes each target's checks inspect (kube-proxy is optional, as upstream
// has it): without them kube-bench reports nonsense, every check on their flags failing.
var required = map[string][]string{
	"master":       {"kube-apiserver", "kube-controller-manager", "kube-scheduler"},
	"controlplane": {"kube-apiserver"},
	"etcd":         {"etcd"},
	"node":         {"kubelet"},
}

// MissingProcesses are the processes targets need that do not run (in this PID namespace).
func MissingProcesses(targets []string) []string { return missingProcesses("/proc", targets) }

func missingProcesses(proc string, targets []string) []string {
	running := map[string]bool{}
	comms, _ := filepath.Glob(filepath.Join(proc, "[0-9]*", "comm"))
	for _, c := range comms {
		if b, err := os.ReadFile(c); err == nil {
			running[strings.TrimSpace(string(b))] = true
		}
	}
	var missing []string
	for _, t := range targets {
		for _, name := range required[t] {
			// The kernel keeps 15 characters of a command's name.
			comm := name
			if len(comm) > 15 {
				comm = comm[:15]
			}
			if !running[comm] && !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
		}
	}
	return missing
}
