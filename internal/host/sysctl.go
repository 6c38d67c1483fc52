package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/paths"
)

// SysctlChange is one sysctl ApplySysctls changed.
type SysctlChange struct {
	Key      string `json:"key"`
	Previous string `json:"previous"`
	Value    string `json:"value"`
}

// Applied lists what ApplySysctls changed this time (empty when all was already fine).
type Applied struct{ Changed []SysctlChange }

// sysctlSetting says which value a sysctl needs given its current one; ok=false: leave it.
type sysctlSetting struct {
	key  string
	want func(cur string) (value string, ok bool)
}

func exactly(v string) func(string) (string, bool) {
	return func(cur string) (string, bool) { return v, normalize(cur) != v }
}

func atLeast(n int) func(string) (string, bool) {
	return func(cur string) (string, bool) {
		c, err := strconv.Atoi(cur)
		return strconv.Itoa(n), err != nil || c < n
	}
}

// hostSysctls are the host settings the node needs. New network namespaces copy
// net.ipv4.conf.all.* (forwarding, rp_filter) from the host's, so the node's namespace,
// made later by rootlesskit, inherits them.
var hostSysctls = []sysctlSetting{
	// Pods and Services are routed inside the node's namespace.
	{"net.ipv4.ip_forward", exactly("1")},
	// Unprivileged ICMP sockets, for ping in containers that run as non-root.
	{"net.ipv4.ping_group_range", exactly("0 2147483647")},
	// Strict reverse-path filtering drops flannel's VXLAN traffic; loose (2) does not.
	{"net.ipv4.conf.all.rp_filter", func(cur string) (string, bool) { return "2", cur == "1" }},
	// kubelet, cri-o and every pod watch files as the same user; the defaults (128) run out.
	{"fs.inotify.max_user_instances", atLeast(8192)},
	{"fs.inotify.max_user_watches", atLeast(524288)},
	// runc gives each container a session keyring, all owned by the node's user;
	// the default quota of 200 keys per user is reached at about a hundred containers.
	{"kernel.keys.maxkeys", atLeast(2000)},
	{"kernel.keys.maxbytes", atLeast(2000000)},
}

func normalize(v string) string { return strings.Join(strings.Fields(v), " ") }

func sysctlPath(key string) string { return "/proc/sys/" + strings.ReplaceAll(key, ".", "/") }

// ApplySysctls sets the sysctls the node needs, now (through /proc/sys) and at boot
// (paths.SysctlConf), and records their previous values in the host state for
// RestoreSysctls. Values already good enough are left alone. It is idempotent.
func ApplySysctls() (Applied, error) { return defaultSystem().applySysctls(hostSysctls) }

// RestoreSysctls undoes ApplySysctls for u7s reset: it puts back each previous value that
// nobody changed since, and removes paths.SysctlConf.
func RestoreSysctls() error { return defaultSystem().restoreSysctls() }

func (s *system) applySysctls(settings []sysctlSetting) (Applied, error) {
	var changes []SysctlChange
	for _, set := range settings {
		cur, err := s.readSysctl(set.key)
		if isNotExist(err) {
			continue // not in this kernel
		}
		if err != nil {
			return Applied{}, fmt.Errorf("read sysctl %s: %w", set.key, err)
		}
		if v, ok := set.want(normalize(cur)); ok {
			changes = append(changes, SysctlChange{Key: set.key, Previous: normalize(cur), Value: v})
		}
	}
	st, err := s.loadState()
	if err != nil {
		return Applied{}, err
	}
	for _, c := range changes {
		if i := slices.IndexFunc(st.Sysctls, func(o SysctlChange) bool { return o.Key == c.Key }); i >= 0 {
			st.Sysctls[i].Value = c.Value // the first Previous is the host's own value
		} else {
			st.Sysctls = append(st.Sysctls, c)
		}
	}
	// Record before changing, so that reset can undo a half-done apply.
	if err := s.saveState(st); err != nil {
		return Applied{}, err
	}
	if len(st.Sysctls) > 0 {
		var b strings.Builder
		b.WriteString("# Written by u7s init for the rootless Kubernetes node; removed by u7s reset.\n")
		for _, c := range st.Sysctls {
			fmt.Fprintf(&b, "%s = %s\n", c.Key, c.Value)
		}
		conf := s.path(paths.SysctlConf)
		if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
			return Applied{}, fmt.Errorf("write %s: %w", paths.SysctlConf, err)
		}
		if err := fsutil.WriteFileAtomic(conf, []byte(b.String()), 0o644); err != nil {
			return Applied{}, err
		}
	}
	var errs []error
	for _, c := range changes {
		if err := s.writeSysctl(c.Key, c.Value); err != nil {
			errs = append(errs, err)
		}
	}
	return Applied{Changed: changes}, errors.Join(errs...)
}

func (s *system) writeSysctl(key, value string) error {
	if err := os.WriteFile(s.path(sysctlPath(key)), []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s = %s: %w", key, value, err)
	}
	return nil
}

func (s *system) restoreSysctls() error {
	st, err := s.loadState()
	if err != nil {
		return err
	}
	var errs []error
	var failed []SysctlChange
	for _, c := range st.Sysctls {
		cur, err := s.readSysctl(c.Key)
		if err != nil || normalize(cur) != c.Value {
			continue // gone, or changed by someone else since: theirs now
		}
		if err := s.writeSysctl(c.Key, c.Previous); err != nil {
			errs = append(errs, err)
			failed = append(failed, c)
		}
	}
	if err := os.Remove(s.path(paths.SysctlConf)); err != nil && !isNotExist(err) {
		errs = append(errs, fmt.Errorf("remove %s: %w", paths.SysctlConf, err))
	}
	if err := s.updateState(func(st *State) { st.Sysctls = failed }); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// PackagedSysctlConf is where the distribution package ships SysctlConf's text.
const PackagedSysctlConf = paths.PackagedSysctlConf

// SysctlConf is the sysctl.d file of the settings the node needs (the package ships it, so
// that a packaged host has them from boot and init finds nothing to change).
func SysctlConf() string {
	var b strings.Builder
	b.WriteString("# The kernel settings a u7s rootless Kubernetes node needs (u7s generate sysctl).\n")
	for _, set := range hostSysctls {
		v, _ := set.want("")
		fmt.Fprintf(&b, "%s = %s\n", set.key, v)
	}
	return b.String()
}

// KernelModules are the modules the node needs loaded (podsec-k8s's modules-load.d list, vxlan
// for flannel, and the sets and matches of NetworkPolicy's rules): the package ships them as
// modules-load.d/u7s.conf. Where they are built into the kernel, loading them is a no-op.
var KernelModules = []string{
	"tun", "overlay", "bridge", "br_netfilter", "veth", "vxlan",
	"ip_tables", "ip6_tables", "iptable_nat", "ip6table_nat", "iptable_filter", "ip6table_filter",
	"nf_tables", "x_tables", "xt_MASQUERADE", "xt_addrtype", "xt_comment", "xt_conntrack",
	"xt_mark", "xt_multiport", "xt_nat", "xt_tcpudp",
	"ip_set", "ip_set_hash_ip", "ip_set_hash_net", "ip_set_hash_ipport", "ip_set_hash_ipportnet",
	"xt_set", "xt_physdev", "xt_limit", "xt_NFLOG", "nfnetlink_log", "ipt_REJECT", "nft_compat",
}
