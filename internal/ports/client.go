package ports

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rootless-containers/rootlesskit/v3/pkg/api/client"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port"

	"github.com/u7s/u7s/internal/paths"
)

// Manager connects to the running node's rootlesskit port API.
func Manager() (port.Manager, error) {
	if _, err := os.Stat(paths.RootlesskitAPISocket); err != nil {
		return nil, fmt.Errorf("no port API at %s: is the node running? (u7s status)", paths.RootlesskitAPISocket)
	}
	c, err := client.New(paths.RootlesskitAPISocket)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", paths.RootlesskitAPISocket, err)
	}
	return c.PortManager(), nil
}

// Add forwards sp after the checks that give a clear error: the same parent port already
// forwarded, and a privileged host port the host does not let u7s-admin bind.
func Add(ctx context.Context, m port.Manager, sp port.Spec) (*port.Status, error) {
	existing, err := m.ListPorts(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range existing {
		if Conflicts(st.Spec, sp) {
			return nil, fmt.Errorf("%s: host port %d/%s is already forwarded (id %d: %s); remove it first (u7s ports remove %d)",
				Format(sp), sp.ParentPort, baseProto(sp.Proto), st.ID, Format(st.Spec), st.ID)
		}
	}
	if start := UnprivilegedPortStart(); sp.ParentPort < start {
		return nil, fmt.Errorf("%s: host port %d is below net.ipv4.ip_unprivileged_port_start (%d), which the node's user may not bind: "+
			"lower it (sysctl -w net.ipv4.ip_unprivileged_port_start=%d) or use a port >= %d", Format(sp), sp.ParentPort, start, sp.ParentPort, start)
	}
	st, err := m.AddPort(ctx, sp)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Format(sp), err)
	}
	return st, nil
}

// Conflicts reports whether two forwards would listen on the same host port.
func Conflicts(a, b port.Spec) bool {
	if a.ParentPort != b.ParentPort || baseProto(a.Proto) != baseProto(b.Proto) {
		return false
	}
	any := func(ip string) bool { return ip == "" || ip == "0.0.0.0" || ip == "::" }
	return a.ParentIP == b.ParentIP || any(a.ParentIP) || any(b.ParentIP)
}

func baseProto(p string) string { return strings.TrimRight(p, "46") }

// UnprivilegedPortStart is the lowest port an unprivileged process may bind.
func UnprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}

// Remove removes forwards by ID or by spec.
func Remove(ctx context.Context, m port.Manager, arg string) (port.Status, error) {
	existing, err := m.ListPorts(ctx)
	if err != nil {
		return port.Status{}, err
	}
	if id, err := strconv.Atoi(arg); err == nil {
		for _, st := range existing {
			if st.ID == id {
				return st, m.RemovePort(ctx, id)
			}
		}
		return port.Status{}, fmt.Errorf("no forward with id %d: see u7s ports list", id)
	}
	sp, err := ParseSpec(arg)
	if err != nil {
		return port.Status{}, err
	}
	for _, st := range existing {
		if st.Spec.ParentPort == sp.ParentPort && baseProto(st.Spec.Proto) == baseProto(sp.Proto) &&
			(sp.ParentIP == "" || st.Spec.ParentIP == sp.ParentIP) {
			return st, m.RemovePort(ctx, st.ID)
		}
	}
	return port.Status{}, errors.New("no forward matches " + arg + ": see u7s ports list")
}
