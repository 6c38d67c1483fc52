package crio

import "github.com/pelletier/go-toml/v2"

func marshalTOML(v any) ([]byte, error) { return toml.Marshal(v) }
