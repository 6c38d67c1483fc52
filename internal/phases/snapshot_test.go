package phases

import (
	"context"
	"io"
	"strings"
	"testing"
)

// TestSnapshotOptions: the options are refused before anything is looked up or written.
func TestSnapshotOptions(t *testing.T) {
	for _, tc := range []struct {
		o    SnapshotOptions
		want string
	}{
		{SnapshotOptions{}, "give the snapshot's FILE, or --scheduled"},
		{SnapshotOptions{File: "/x", Scheduled: true, Keep: 7}, "not both"},
		{SnapshotOptions{Scheduled: true, Keep: 0}, "keep at least 1"},
	} {
		_, err := NewSnapshotSaveData(context.Background(), tc.o, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.o, err, tc.want)
		}
	}
}
