package cli

import (
	"path/filepath"
	"strconv"

	"github.com/u7s/u7s/internal/cni"
	"github.com/u7s/u7s/internal/namespace"
	"github.com/u7s/u7s/internal/ociruntime"
)

// argv0Handlers run u7s under another name, behind a symlink: the CNI plugin "flannel"
// (paths.CNIBin/flannel, run by cri-o) and the OCI runtime wrapper.
var argv0Handlers = map[string]func(args []string) error{
	"flannel":       cni.Main,
	ociruntime.Name: ociruntime.Main,
}

// Main dispatches on argv[0] first (CNI plugin, rootlesskit child), then on the command tree.
func Main(args []string) error {
	if h, ok := argv0Handlers[filepath.Base(args[0])]; ok {
		return h(args)
	}
	// The rootlesskit child is a re-exec of `u7s supervise`; the pipe in its environment tells it
	// apart before any flag is parsed.
	if namespace.IsChild() {
		return namespace.RunChild()
	}
	root := NewRootCommand()
	root.SetArgs(args[1:])
	return root.Execute()
}

// ExitCode is the error of a command that ran another program to its end (u7s enter): u7s
// exits with that program's status and says nothing more.
type ExitCode int

func (e ExitCode) Error() string { return "exit status " + strconv.Itoa(int(e)) }
