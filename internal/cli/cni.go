package cli

import "github.com/u7s/u7s/internal/cni"

// u7s is also the "flannel" CNI plugin: cri-o runs it through the symlink
// paths.CNIBin/flannel -> paths.Binary.
func init() { argv0Handlers["flannel"] = cni.Main }
