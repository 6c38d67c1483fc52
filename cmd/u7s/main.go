// Command u7s turns a Linux host into a rootless Kubernetes node.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/u7s/u7s/internal/cli"
)

func main() {
	err := cli.Main(os.Args)
	var code cli.ExitCode
	switch {
	case err == nil:
	case errors.As(err, &code):
		os.Exit(int(code))
	default:
		fmt.Fprintln(os.Stderr, "u7s: error:", err)
		os.Exit(1)
	}
}
