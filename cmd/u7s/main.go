// Command u7s turns a Linux host into a rootless Kubernetes node.
package main

import (
	"fmt"
	"os"

	"github.com/u7s/u7s/internal/cli"
)

func main() {
	if err := cli.Main(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "u7s: error:", err)
		os.Exit(1)
	}
}
