// Package ports forwards ports from the host into the node's namespace through rootlesskit's
// port API: by hand (u7s ports, rootlessctl's syntax) and automatically for every NodePort.
package ports

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
)

// Protocols the builtin port driver forwards.
var Protocols = []string{"tcp", "udp", "tcp4", "udp4", "tcp6", "udp6"}

// ParseSpec reads rootlessctl's syntax [parentIP:]parentPort:[childIP:]childPort/proto, with
// IPv6 addresses in brackets, e.g. 0.0.0.0:8080:80/tcp or [::]:53:53/udp.
func ParseSpec(s string) (port.Spec, error) {
	bad := func(format string, args ...any) (port.Spec, error) {
		return port.Spec{}, fmt.Errorf("port spec %q: %s (want [parentIP:]parentPort:[childIP:]childPort/proto, e.g. 0.0.0.0:8080:80/tcp)",
			s, fmt.Sprintf(format, args...))
	}
	body, proto, ok := strings.Cut(s, "/")
	if !ok {
		return bad("no /proto at the end")
	}
	if !validProto(proto) {
		return bad("unknown protocol %q: use one of %s", proto, strings.Join(Protocols, ", "))
	}
	parts, err := splitColons(body)
	if err != nil {
		return bad("%v", err)
	}
	var sp port.Spec
	sp.Proto = proto
	switch len(parts) {
	case 2:
		sp.ParentPort, sp.ChildPort, err = ports(parts[0], parts[1])
	case 3:
		if _, perr := strconv.Atoi(parts[0]); perr == nil {
			sp.ChildIP = parts[1]
			sp.ParentPort, sp.ChildPort, err = ports(parts[0], parts[2])
		} else {
			sp.ParentIP = parts[0]
			sp.ParentPort, sp.ChildPort, err = ports(parts[1], parts[2])
		}
	case 4:
		sp.ParentIP, sp.ChildIP = parts[0], parts[2]
		sp.ParentPort, sp.ChildPort, err = ports(parts[1], parts[3])
	default:
		return bad("%d colon-separated parts", len(parts))
	}
	if err != nil {
		return bad("%v", err)
	}
	for _, ip := range []string{sp.ParentIP, sp.ChildIP} {
		if ip != "" && net.ParseIP(ip) == nil {
			return bad("%q is not an IP address", ip)
		}
	}
	return sp, nil
}

// Format writes a spec back in rootlessctl's syntax.
func Format(sp port.Spec) string {
	host := func(ip string) string {
		if ip == "" {
			return ""
		}
		if strings.Contains(ip, ":") {
			return "[" + ip + "]:"
		}
		return ip + ":"
	}
	return fmt.Sprintf("%s%d:%s%d/%s", host(sp.ParentIP), sp.ParentPort, host(sp.ChildIP), sp.ChildPort, sp.Proto)
}

func validProto(p string) bool {
	for _, x := range Protocols {
		if p == x {
			return true
		}
	}
	return false
}

func ports(parent, child string) (int, int, error) {
	p, err := portNumber(parent)
	if err != nil {
		return 0, 0, fmt.Errorf("parent port: %w", err)
	}
	c, err := portNumber(child)
	if err != nil {
		return 0, 0, fmt.Errorf("child port: %w", err)
	}
	return p, c, nil
}

func portNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%d is out of range 1-65535", n)
	}
	return n, nil
}

// splitColons splits on ':' outside brackets and strips the brackets.
func splitColons(s string) ([]string, error) {
	var parts []string
	for s != "" {
		if s[0] == '[' {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ in an IPv6 address")
			}
			parts = append(parts, s[1:end])
			s = s[end+1:]
			if s != "" {
				if s[0] != ':' {
					return nil, fmt.Errorf("want : after ]")
				}
				s = s[1:]
			}
			continue
		}
		p, rest, found := strings.Cut(s, ":")
		parts = append(parts, p)
		s = rest
		if found && rest == "" {
			parts = append(parts, "")
		}
	}
	return parts, nil
}
