package ports

import (
	"strings"
	"testing"

	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
)

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want port.Spec
	}{
		{"8080:80/tcp", port.Spec{Proto: "tcp", ParentPort: 8080, ChildPort: 80}},
		{"0.0.0.0:8080:80/tcp", port.Spec{Proto: "tcp", ParentIP: "0.0.0.0", ParentPort: 8080, ChildPort: 80}},
		{"8080:10.0.2.100:80/udp", port.Spec{Proto: "udp", ParentPort: 8080, ChildIP: "10.0.2.100", ChildPort: 80}},
		{"127.0.0.1:53:127.0.0.1:53/udp", port.Spec{Proto: "udp", ParentIP: "127.0.0.1", ParentPort: 53, ChildIP: "127.0.0.1", ChildPort: 53}},
		{"[::1]:8080:[::2]:80/tcp6", port.Spec{Proto: "tcp6", ParentIP: "::1", ParentPort: 8080, ChildIP: "::2", ChildPort: 80}},
		{"[::]:30080:30080/tcp", port.Spec{Proto: "tcp", ParentIP: "::", ParentPort: 30080, ChildPort: 30080}},
	} {
		got, err := ParseSpec(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if back, err := ParseSpec(Format(got)); err != nil || back != got {
			t.Errorf("%s: Format round trip %q: %+v %v", tc.in, Format(got), back, err)
		}
	}
	for in, wantErr := range map[string]string{
		"0:80/tcp":           "out of range",
		"70000:80/tcp":       "out of range",
		"8080:80/sctpx":      "unknown protocol",
		"8080:80":            "no /proto",
		"garbage":            "no /proto",
		"abc:def/tcp":        "not a number",
		"1.2.3:8080:80/tcp":  "not an IP",
		"[::1:8080:80/tcp":   "unclosed",
		"1:2:3:4:5/tcp":      "parts",
		"0.0.0.0:8080:0/tcp": "out of range",
		"0.0.0.0:8080:/tcp":  "not a number",
	} {
		_, err := ParseSpec(in)
		if err == nil || !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), "want [parentIP:]") {
			t.Errorf("%s: want error containing %q, got %v", in, wantErr, err)
		}
	}
}
