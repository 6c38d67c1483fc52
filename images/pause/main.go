// Command pause is the infra container of every pod: it holds the pod's namespaces,
// reaps orphans (it is PID 1 of the pod when the PID namespace is shared) and exits on
// SIGINT or SIGTERM. u7s's own, so the image builds from this tree alone. As upstream's, -v
// prints its version and exits: kubeadm's upgrade health check runs a Job of it that must end.
package main

import (
	"fmt"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// version is the image's tag, set by the linker (scripts/build-components.sh).
var version = "unknown"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause (u7s) " + version)
		return
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGCHLD)
	for s := range sigs {
		if s != unix.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
