package cli

import (
	"path/filepath"
	"strconv"
)

// argv0Handlers run u7s under another name: the CNI plugin "flannel" is u7s behind a symlink.
var argv0Handlers = map[string]func(args []string) error{}

// Main dispatches on argv[0] first (CNI plugin, rootlesskit child), then on the command tree.
func Main(args []string) error {
	if h, ok := argv0Handlers[filepath.Base(args[0])]; ok {
		return h(args)
	}
	for _, hook := range earlyHooks {
		if handled, err := hook(); handled {
			return err
		}
	}
	root := NewRootCommand()
	root.SetArgs(args[1:])
	return root.Execute()
}

// ExitCode is the error of a command that ran another program to its end (u7s enter): u7s
// exits with that program's status and says nothing more.
type ExitCode int

func (e ExitCode) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// earlyHooks run before cobra parses flags; a hook that reports handled ends the program.
// The rootlesskit child, a re-exec of the supervisor, is recognised this way.
var earlyHooks []func() (handled bool, err error)
