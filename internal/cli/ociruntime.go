package cli

import "github.com/u7s/u7s/internal/ociruntime"

func init() { argv0Handlers[ociruntime.Name] = ociruntime.Main }
