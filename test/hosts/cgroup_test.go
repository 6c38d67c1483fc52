package hosts

import (
	"os"
	"path/filepath"
	"testing"
)

// The weight lands in the file the hierarchy has, scaled to v1's shares.
func TestCPUWeightFile(t *testing.T) {
	for _, c := range []struct {
		file      string
		weight    int
		wantValue string
	}{
		{"cpu.shares", 25, "256"},
		{"cpu.shares", 100, "1024"},
		{"cpu.shares", 1, "10"},
		{"cpu.weight", 25, "25"},
		{"cpu.shares", 0, ""},
		{"memory.limit_in_bytes", 25, ""},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, c.file), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		f, v := cpuWeightFile(dir, c.weight)
		if v != c.wantValue || (v != "" && f != filepath.Join(dir, c.file)) || (v == "" && f != "") {
			t.Errorf("%s, weight %d: %q %q, want %q in %s", c.file, c.weight, f, v, c.wantValue, c.file)
		}
	}
}
