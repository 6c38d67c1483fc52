package maintenance

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/u7s/u7s/systemd"
)

// The service's trigger conditions are the agent's files: one missing and the agent never
// runs for it (a reboot never asked for, or a node never handed back).
func TestServiceConditions(t *testing.T) {
	opts, err := unit.DeserializeOptions(bytes.NewReader(systemd.MaintenanceService.File))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range opts {
		if o.Section == "Unit" && o.Name == "ConditionPathExists" && strings.HasPrefix(o.Value, "|") {
			got = append(got, strings.TrimPrefix(o.Value, "|"))
		}
	}
	a := nodeFiles()
	want := []string{a.Sentinel, a.Marker, a.Asked}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s's trigger conditions %v, want the agent's files %v", systemd.MaintenanceService.Name, got, want)
	}
}
