package manifests

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Every embedded manifest is a stream of YAML objects with apiVersion and kind.
func TestManifestsParse(t *testing.T) {
	names, err := fs.Glob(files, "*.yml")
	if err != nil || len(names) == 0 {
		t.Fatalf("no manifests embedded: %v", err)
	}
	for _, name := range names {
		b, err := Get(name)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		objects := 0
		for {
			var obj map[string]any
			err := dec.Decode(&obj)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if obj == nil {
				continue
			}
			if obj["apiVersion"] == nil || obj["kind"] == nil {
				t.Errorf("%s: object without apiVersion/kind: %v", name, obj)
			}
			objects++
		}
		if objects == 0 {
			t.Errorf("%s holds no objects", name)
		}
	}
	for _, name := range []string{KubeFlannel, Netpol, MetricsServer} {
		if _, err := Get(name); err != nil {
			t.Errorf("constant %s: %v", name, err)
		}
	}
	if _, err := Get("missing.yml"); err == nil {
		t.Error("Get of a missing manifest succeeded")
	}
}
