// Package registry implements the specification's rules for choosing the image registry
// (U7S_REGISTRY, "Выбор регистратора образов" and "Автоматический выбор регистратора образов"),
// names the images a node pulls from it, and checks and pulls them. init, join and the
// `u7s registry` and `u7s images` commands all go through this package, so they agree.
package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/u7s/u7s/images"
)

const (
	// EnvVar names the registry; see Resolve for what unset, empty and other values mean.
	EnvVar = "U7S_REGISTRY"

	// NativeRegistry is the upstream Kubernetes registry (kubeadm's default imageRepository).
	NativeRegistry = "registry.k8s.io"
	// NativeFlannelRepository is where flannel publishes its own images; used with the native registry,
	// which has no flannel.
	NativeFlannelRepository = "ghcr.io/flannel-io/flannel"
	// NativeKubeRouterRepository is where kube-router publishes its own images; with the native
	// registry the NetworkPolicy controller is upstream's kube-router (same arguments).
	NativeKubeRouterRepository = "docker.io/cloudnativelabs/kube-router"
	// NativeMetricsServerRepository is metrics-server's own image under the native registry.
	NativeMetricsServerRepository = NativeRegistry + "/metrics-server/metrics-server"

	// LocalRegistryHost is podsec's local registry, the only one spoken to over plain HTTP.
	LocalRegistryHost = "registry.local"
	// ALTRegistryHost is ALT Linux's public registry.
	ALTRegistryHost = "registry.altlinux.org"
	// PlatformCertified holds the images for the certified distribution (CPE_NAME contains spserver).
	PlatformCertified = "k8s-c10f1"
	// PlatformP10 holds the images for every other distribution.
	PlatformP10 = "k8s-p10"
	// LocalDefault is the local registry's prefix of the node images on every other
	// distribution: what make images fills and u7s images load fills by default.
	LocalDefault = LocalRegistryHost + "/" + PlatformP10
	// certifiedMarker in CPE_NAME of os-release selects PlatformCertified.
	certifiedMarker = "spserver"

	// DefaultHostsFile and DefaultOSReleaseFile are the files the automatic rule reads.
	DefaultHostsFile     = "/etc/hosts"
	DefaultOSReleaseFile = "/etc/os-release"
)

// Source is where Resolve reads its inputs; zero fields mean the real environment and files.
type Source struct {
	Env           func(string) (string, bool) // default os.LookupEnv
	HostsFile     string                      // default /etc/hosts
	OSReleaseFile string                      // default /etc/os-release
}

func (s Source) withDefaults() Source {
	if s.Env == nil {
		s.Env = os.LookupEnv
	}
	if s.HostsFile == "" {
		s.HostsFile = DefaultHostsFile
	}
	if s.OSReleaseFile == "" {
		s.OSReleaseFile = DefaultOSReleaseFile
	}
	return s
}

// Resolution is the chosen registry.
type Resolution struct {
	// Value is the registry/repository prefix images are named under: <Value>/<image>:<tag>.
	// For the native registry it is registry.k8s.io (and flannel comes from NativeFlannelRepository).
	Value string
	// Native is true for the upstream Kubernetes registry: U7S_REGISTRY set and empty, or set to
	// registry.k8s.io itself (kubeadm treats that value as its default too, e.g. for coredns).
	Native bool
	// Explanation says, one line each, which rule decided and from which file lines.
	Explanation []string
}

// Resolve applies the specification's rules:
//   - U7S_REGISTRY unset: <prefix>/<platform>, prefix registry.local when an active line of /etc/hosts
//     names registry.local, else registry.altlinux.org; platform k8s-c10f1 when CPE_NAME of
//     /etc/os-release contains spserver, else k8s-p10. A missing file counts as "no"; an unreadable
//     one is an error.
//   - set and empty: the native Kubernetes registry.
//   - set, not empty: used as given, trailing slashes dropped; an invalid prefix is an error.
func Resolve(src Source) (Resolution, error) {
	src = src.withDefaults()
	v, set := src.Env(EnvVar)
	switch {
	case set && v == "":
		return nativeResolution(EnvVar + " is set and empty: the native Kubernetes registry"), nil
	case set:
		value, err := validateValue(v)
		if err != nil {
			return Resolution{}, err
		}
		if value == NativeRegistry {
			return nativeResolution(fmt.Sprintf("%s=%q names the native Kubernetes registry itself: upstream image names", EnvVar, v)), nil
		}
		r := Resolution{Value: value, Explanation: []string{fmt.Sprintf("%s=%q is set: used as given", EnvVar, v)}}
		if value != v {
			r.Explanation = append(r.Explanation, "trailing slashes dropped")
		}
		r.Explanation = append(r.Explanation, transportNote(value))
		return r, nil
	}
	return resolveAutomatic(src)
}

func nativeResolution(why string) Resolution {
	return Resolution{
		Value:  NativeRegistry,
		Native: true,
		Explanation: []string{
			why,
			fmt.Sprintf("images from %s with kubeadm's upstream names (coredns at %s/coredns/coredns); flannel from %s",
				NativeRegistry, NativeRegistry, NativeFlannelRepository),
			transportNote(NativeRegistry),
		},
	}
}

func resolveAutomatic(src Source) (Resolution, error) {
	expl := []string{EnvVar + " is not set: the automatic rule (prefix from " + src.HostsFile + ", platform from " + src.OSReleaseFile + ")"}

	prefix := ALTRegistryHost
	line, err := findHostsEntry(src.HostsFile, LocalRegistryHost)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		expl = append(expl, fmt.Sprintf("%s does not exist: no %s → prefix %s", src.HostsFile, LocalRegistryHost, prefix))
	case err != nil:
		return Resolution{}, fmt.Errorf("choosing the image registry: %w; make the file readable or set %s", err, EnvVar)
	case line != nil:
		prefix = LocalRegistryHost
		expl = append(expl, fmt.Sprintf("%s:%d: %s → prefix %s", src.HostsFile, line.number, line.text, prefix))
	default:
		expl = append(expl, fmt.Sprintf("%s: no active line names %s → prefix %s", src.HostsFile, LocalRegistryHost, prefix))
	}

	platform := PlatformP10
	cpe, err := readOSReleaseVar(src.OSReleaseFile, "CPE_NAME")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		expl = append(expl, fmt.Sprintf("%s does not exist: not %s → platform %s", src.OSReleaseFile, certifiedMarker, platform))
	case err != nil:
		return Resolution{}, fmt.Errorf("choosing the image registry: %w; make the file readable or set %s", err, EnvVar)
	case cpe == nil:
		expl = append(expl, fmt.Sprintf("%s: no CPE_NAME → platform %s", src.OSReleaseFile, platform))
	case strings.Contains(cpe.value, certifiedMarker):
		platform = PlatformCertified
		expl = append(expl, fmt.Sprintf("%s:%d: %s (CPE_NAME %q contains %s) → platform %s",
			src.OSReleaseFile, cpe.line, cpe.text, cpe.value, certifiedMarker, platform))
	default:
		expl = append(expl, fmt.Sprintf("%s:%d: %s (CPE_NAME %q does not contain %s) → platform %s",
			src.OSReleaseFile, cpe.line, cpe.text, cpe.value, certifiedMarker, platform))
	}

	value := prefix + "/" + platform
	expl = append(expl, transportNote(value))
	return Resolution{Value: value, Explanation: expl}, nil
}

func transportNote(value string) string {
	host := images.RegistryHost(value)
	if Insecure(value) {
		return host + " is the local registry: plain HTTP"
	}
	return host + ": HTTPS with certificate verification"
}

// hostsLine is an active /etc/hosts line, comment removed.
type hostsLine struct {
	number int
	text   string
}

// findHostsEntry returns the first active line of a hosts(5) file whose host names include
// host (case-insensitively, as the resolver compares), or nil.
func findHostsEntry(path, host string) (*hostsLine, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for i, line := range strings.Split(string(data), "\n") {
		if c := strings.IndexByte(line, '#'); c >= 0 {
			line = line[:c]
		}
		fields := strings.Fields(line)
		// An entry is an address followed by at least one name; the resolver ignores a line
		// whose first field is not an address.
		if len(fields) < 2 {
			continue
		}
		if _, err := netip.ParseAddr(fields[0]); err != nil {
			continue
		}
		for _, n := range fields[1:] {
			if strings.EqualFold(n, host) {
				return &hostsLine{number: i + 1, text: strings.Join(fields, " ")}, nil
			}
		}
	}
	return nil, nil
}

// osReleaseVar is one assignment of an os-release file.
type osReleaseVar struct {
	value string
	line  int    // where the assignment starts
	text  string // the assignment as written, surrounding blanks trimmed
}

// readOSReleaseVar returns the last assignment of key in an os-release(5) file, or nil.
func readOSReleaseVar(path, key string) (*osReleaseVar, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	vars := parseOSRelease(string(data))
	if v, ok := vars[key]; ok {
		return &v, nil
	}
	return nil, nil
}

// parseOSRelease reads os-release(5) assignments the way systemd's environment-file parser
// (the reference reader of os-release) does: "#" and ";" lines are comments (a trailing backslash
// continues them), values may be unquoted (backslash escapes any character, trailing blanks are
// dropped), single-quoted (no escapes) or double-quoted (backslash escapes " \ ` $ and newline,
// and is kept before anything else); adjacent pieces are concatenated; the last assignment wins.
// Unlike systemd, and like a shell sourcing the file, a "#" after a blank ends the value and starts a
// comment, so that a trailing comment cannot add words such as spserver to a value.
func parseOSRelease(data string) map[string]osReleaseVar {
	const (
		preKey = iota
		key
		comment
		commentEscape
		preValue
		afterQuoteBlank
		value
		valueEscape
		singleQuote
		doubleQuote
		doubleQuoteEscape
	)
	vars := map[string]osReleaseVar{}
	state := preKey
	line := 1
	var k, v strings.Builder
	// valueEnd is v's length without trailing unquoted blanks; -1 when no trailing blanks.
	valueEnd := -1
	quoted := false // a quoted piece of the current value has ended
	startLine, startPos := 0, 0
	finish := func(end int) {
		val := v.String()
		if valueEnd >= 0 {
			val = val[:valueEnd]
		}
		name := strings.TrimRight(k.String(), " \t")
		if name != "" {
			vars[name] = osReleaseVar{value: val, line: startLine, text: strings.TrimSpace(data[startPos:end])}
		}
		k.Reset()
		v.Reset()
		valueEnd = -1
		quoted = false
		state = preKey
	}
	isBlank := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch state {
		case preKey:
			switch {
			case c == '#' || c == ';':
				state = comment
			case c == '\n':
			case !isBlank(c):
				state = key
				startLine, startPos = line, i
				k.WriteByte(c)
			}
		case key:
			switch c {
			case '\n':
				k.Reset() // not an assignment
				state = preKey
			case '=':
				state = preValue
			default:
				k.WriteByte(c)
			}
		case comment:
			switch c {
			case '\\':
				state = commentEscape
			case '\n':
				state = preKey
			}
		case commentEscape:
			state = comment
		case preValue, afterQuoteBlank:
			switch {
			case c == '\n':
				finish(i)
			case c == '#' && state == afterQuoteBlank:
				finish(i)
				state = comment
			case isBlank(c) && quoted:
				state = afterQuoteBlank
			case c == '\'':
				state = singleQuote
			case c == '"':
				state = doubleQuote
			case c == '\\':
				state = valueEscape
			case !isBlank(c):
				state = value
				v.WriteByte(c)
			}
		case value:
			switch {
			case c == '\n':
				finish(i)
			case c == '\\':
				state = valueEscape
				valueEnd = -1
			case c == '#' && valueEnd >= 0:
				finish(i)
				state = comment
			default:
				v.WriteByte(c)
				if !isBlank(c) {
					valueEnd = -1
				} else if valueEnd < 0 {
					valueEnd = v.Len() - 1
				}
			}
		case valueEscape:
			state = value
			if c != '\n' { // an escaped newline is a line continuation
				v.WriteByte(c)
			}
		case singleQuote:
			if c == '\'' {
				state = preValue
				quoted = true
			} else {
				v.WriteByte(c)
			}
		case doubleQuote:
			switch c {
			case '"':
				state = preValue
				quoted = true
			case '\\':
				state = doubleQuoteEscape
			default:
				v.WriteByte(c)
			}
		case doubleQuoteEscape:
			state = doubleQuote
			switch c {
			case '"', '\\', '`', '$':
				v.WriteByte(c)
			case '\n':
			default:
				v.WriteByte('\\')
				v.WriteByte(c)
			}
		}
		if c == '\n' {
			line++
		}
	}
	switch state {
	case preValue, afterQuoteBlank, value, valueEscape, singleQuote, doubleQuote, doubleQuoteEscape:
		finish(len(data))
	}
	return vars
}

var (
	// Grammar of github.com/distribution/reference, which cri-o and kubeadm follow.
	pathComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	domainLabel   = regexp.MustCompile(`^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$`)
)

// validateValue checks a non-empty U7S_REGISTRY and returns it with trailing slashes dropped.
func validateValue(raw string) (string, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s=%q is not a registry/repository prefix: %s; use a value like %s/%s or %s/%s, or set it empty for the native registry",
			EnvVar, raw, fmt.Sprintf(format, a...), LocalRegistryHost, PlatformP10, ALTRegistryHost, PlatformCertified)
	}
	if strings.Contains(raw, "://") {
		return "", bad("drop the scheme (%s); plain HTTP is used for %s only, HTTPS everywhere else", raw[:strings.Index(raw, "://")+3], LocalRegistryHost)
	}
	if i := strings.IndexFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
		return "", bad("it contains a blank or control character at byte %d", i)
	}
	v := strings.TrimRight(raw, "/")
	if v == "" {
		return "", bad("it names no registry host")
	}
	parts := strings.Split(v, "/")
	for _, p := range parts {
		if p == "" {
			return "", bad("it has an empty path segment")
		}
	}
	if err := validateHost(parts[0]); err != nil {
		return "", bad("%v", err)
	}
	for _, p := range parts[1:] {
		if strings.ContainsAny(p, ":@") {
			return "", bad("path segment %q: give a repository prefix without tag or digest", p)
		}
		if strings.ToLower(p) != p {
			return "", bad("path segment %q: repository paths must be lowercase", p)
		}
		if !pathComponent.MatchString(p) {
			return "", bad("path segment %q: use lowercase letters, digits and single separators (. _ __ -) between them", p)
		}
	}
	// The composed names must still be valid references (e.g. the 255-character limit).
	if _, err := name.NewRepository(v+"/kube-controller-manager", name.StrictValidation); err != nil {
		return "", bad("%v", err)
	}
	return v, nil
}

// validateHost checks the registry part: a DNS name with a dot, a name with a port, or an IP
// address, with an optional port. A first segment without a dot or port would make cri-o search
// unqualified-search-registries, which is never what a node's registry means.
func validateHost(hostport string) error {
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.Index(hostport, "]")
		if end < 0 {
			return fmt.Errorf("registry host %q: unbalanced [", hostport)
		}
		host, port = hostport[1:end], hostport[end+1:]
		if _, err := netip.ParseAddr(host); err != nil || !strings.Contains(host, ":") {
			return fmt.Errorf("registry host %q: not an IPv6 address", hostport)
		}
		if port != "" && !strings.HasPrefix(port, ":") {
			return fmt.Errorf("registry host %q: junk after ]", hostport)
		}
		port = strings.TrimPrefix(port, ":")
	} else if h, p, ok := strings.Cut(hostport, ":"); ok {
		host, port = h, p
	}
	if port != "" || strings.HasSuffix(hostport, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strings.HasPrefix(port, "+") {
			return fmt.Errorf("registry host %q: port %q is not a number from 1 to 65535", hostport, port)
		}
	}
	if strings.HasPrefix(hostport, "[") {
		return nil
	}
	if !strings.Contains(host, ".") && port == "" {
		return fmt.Errorf("first segment %q is not a registry host (it needs a dot or a port, like %s or %s:5000)", host, LocalRegistryHost, LocalRegistryHost)
	}
	for _, l := range strings.Split(host, ".") {
		if !domainLabel.MatchString(l) {
			return fmt.Errorf("registry host %q: label %q is not a DNS label", hostport, l)
		}
	}
	return nil
}
