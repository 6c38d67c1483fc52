package host

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/paths"
	"github.com/u7s/u7s/internal/release"
)

// Names of the preflight checks, for Problem.Check.
const (
	CheckRoot            = "root"
	CheckUIDMap          = "uidmap"
	CheckUserNS          = "userns"
	CheckTun             = "tun"
	CheckBinaries        = "binaries"
	CheckPorts           = "ports"
	CheckExistingCluster = "existing-cluster"
	CheckCIDRs           = "cidrs"
	CheckIPSet           = "ipset"
)

// DefaultAPIServerPort is the host port of the API server unless PreflightOptions says otherwise.
const DefaultAPIServerPort = config.DefaultAPIServerPort

// PreflightOptions says what u7s init is about to set up.
type PreflightOptions struct {
	// APIServerPort is the host port the API server is published on; 0 means 6443.
	APIServerPort int
	// Worker leaves out the control-plane ports (API server, etcd), for a node that joins.
	Worker bool
	// PodCIDR and ServiceCIDR are the cluster's networks; a zero Prefix is not checked.
	PodCIDR, ServiceCIDR netip.Prefix
}

// Problem is one failed check: what is wrong and how to fix it.
type Problem struct {
	Check   string
	Problem string
	Fix     string
}

func (p Problem) String() string { return p.Problem + ": " + p.Fix }

// PreflightError lists every problem Preflight found.
type PreflightError struct{ Problems []Problem }

func (e *PreflightError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the host is not ready for u7s (%d problem(s)):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Preflight checks the host without changing it and returns a *PreflightError listing
// every problem with its fix, or nil.
func Preflight(o PreflightOptions) error { return defaultSystem().preflight(o) }

func (s *system) preflight(o PreflightOptions) error {
	var all []Problem
	all = append(all, s.checkRoot()...)
	all = append(all, s.checkUIDMap()...)
	all = append(all, s.checkUserNS()...)
	all = append(all, s.checkTun()...)
	all = append(all, s.checkBinaries()...)
	all = append(all, s.checkPorts(o)...)
	all = append(all, s.checkExistingCluster()...)
	all = append(all, s.checkCIDRs(o)...)
	all = append(all, s.checkIPSet()...)
	if len(all) == 0 {
		return nil
	}
	return &PreflightError{Problems: all}
}

func (s *system) checkRoot() []Problem {
	if s.euid() != 0 {
		return []Problem{{CheckRoot, "u7s init must run as root", "try sudo u7s init"}}
	}
	return nil
}

const uidmapFix = "install the package that provides it: uidmap (Debian, Ubuntu: apt-get install uidmap), " +
	"shadow-submap (ALT: apt-get install shadow-submap) or shadow-utils (Fedora, RHEL)"

// checkUIDMap: rootlesskit maps the subordinate ids through newuidmap/newgidmap, which
// must be setuid root or carry file capabilities.
func (s *system) checkUIDMap() []Problem {
	var ps []Problem
	for _, name := range []string{"newuidmap", "newgidmap"} {
		p, err := s.lookPath(name)
		if err != nil {
			ps = append(ps, Problem{CheckUIDMap, name + " not found", uidmapFix})
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			ps = append(ps, Problem{CheckUIDMap, fmt.Sprintf("cannot inspect %s: %v", p, err), uidmapFix})
			continue
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&os.ModeSetuid != 0 && st != nil && st.Uid == 0 {
			continue
		}
		if hasFileCaps(p) {
			continue
		}
		ps = append(ps, Problem{CheckUIDMap,
			p + " is neither setuid root nor has file capabilities",
			fmt.Sprintf("chown root %s && chmod u+s %s (or reinstall its package)", p, p)})
	}
	return ps
}

func hasFileCaps(path string) bool {
	n, err := unix.Getxattr(path, "security.capability", nil)
	return err == nil && n > 0
}

func (s *system) readSysctl(key string) (string, error) {
	data, err := os.ReadFile(s.path(sysctlPath(key)))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

func (s *system) checkUserNS() []Problem {
	var ps []Problem
	switch v, err := s.readSysctl("user.max_user_namespaces"); {
	case isNotExist(err):
		ps = append(ps, Problem{CheckUserNS, "the kernel has no user namespaces (no /proc/sys/user/max_user_namespaces)",
			"use a kernel built with CONFIG_USER_NS=y"})
	case err != nil:
		ps = append(ps, Problem{CheckUserNS, "cannot read user.max_user_namespaces: " + err.Error(), "check /proc/sys"})
	case v == "0":
		ps = append(ps, Problem{CheckUserNS, "user namespaces are disabled (user.max_user_namespaces = 0)",
			"sysctl -w user.max_user_namespaces=28633 and set it in /etc/sysctl.d"})
	}
	// Debian's and ALT's kernels gate unprivileged user namespaces with this sysctl.
	if v, err := s.readSysctl("kernel.unprivileged_userns_clone"); err == nil && v != "1" {
		ps = append(ps, Problem{CheckUserNS, "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = " + v + ")",
			"sysctl -w kernel.unprivileged_userns_clone=1 and set it in /etc/sysctl.d"})
	}
	// Ubuntu's AppArmor lets the namespace be created but strips its capabilities.
	if v, err := s.readSysctl("kernel.apparmor_restrict_unprivileged_userns"); err == nil && v != "0" {
		ps = append(ps, Problem{CheckUserNS, "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = " + v + ")",
			"sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 and set it in /etc/sysctl.d, or give " + paths.Binary + " an AppArmor profile that allows userns"})
	}
	if len(ps) == 0 && s.tryUserns != nil {
		if err := s.tryUserns(); err != nil {
			ps = append(ps, Problem{CheckUserNS, "an unprivileged user cannot create a user namespace (" + strings.TrimSpace(err.Error()) + ")",
				"allow unprivileged user namespaces (check SELinux/AppArmor policy and the kernel's userns sysctls)"})
		}
	}
	return ps
}

// checkIPSet: NetworkPolicy is enforced with ipsets (package netpol), which the node's network
// namespace can hold only where the host's kernel has ip_set. Without it every pod would reach
// every other whatever the policies say; the node refuses to start rather than pretend.
func (s *system) checkIPSet() []Problem {
	if s.ipset == nil {
		return nil
	}
	if err := s.ipset(); err != nil {
		return []Problem{{CheckIPSet, fmt.Sprintf("the kernel has no ip_set (%v), so NetworkPolicy could not be enforced", err),
			"load its modules: modprobe -a ip_set ip_set_hash_ip ip_set_hash_net ip_set_hash_ipport xt_set, " +
				"and list them in /etc/modules-load.d/u7s.conf; a custom kernel needs CONFIG_IP_SET, " +
				"CONFIG_IP_SET_HASH_IP, CONFIG_IP_SET_HASH_NET, CONFIG_IP_SET_HASH_IPPORT and CONFIG_NETFILTER_XT_SET"}}
	}
	return nil
}

func (s *system) checkTun() []Problem {
	const tun = "/dev/net/tun"
	fi, err := os.Stat(s.path(tun))
	if err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return nil
	}
	return []Problem{{CheckTun, tun + " is missing (slirp4netns needs it)",
		"load the tun module (modprobe tun); in a container, pass the device /dev/net/tun into it"}}
}

// hostTools are the host's programs u7s runs, with the Debian package that has each.
var hostTools = []struct{ name, pkg string }{
	{"slirp4netns", "slirp4netns"},
	{"conmon", "conmon"},
	{"nsenter", "util-linux"},
	{"iptables", "iptables"},
}

func (s *system) checkBinaries() []Problem {
	var ps []Problem
	for _, t := range hostTools {
		if _, err := s.lookPath(t.name); err != nil {
			ps = append(ps, Problem{CheckBinaries, t.name + " not found",
				fmt.Sprintf("install the %s package (apt-get install %s)", t.pkg, t.pkg)})
		}
	}
	var missing []string
	// The node binaries of the release this u7s carries, which `make install` or the package
	// put in paths.LibexecBin and init and join copy from there.
	for _, b := range release.Binaries {
		fi, err := os.Stat(s.path(filepath.Join(paths.LibexecBin, b)))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		ps = append(ps, Problem{CheckBinaries,
			fmt.Sprintf("node binaries missing from %s: %s", paths.LibexecBin, strings.Join(missing, ", ")),
			"run make install in the u7s source tree (it builds and installs them)"})
	}
	return ps
}

func (s *system) checkPorts(o PreflightOptions) []Problem {
	var ps []Problem
	role := config.ControlPlane
	if o.Worker {
		role = config.Worker
	}
	for _, np := range config.PortsOf(role, o.APIServerPort) {
		p := struct {
			network, what string
			port          int
		}{np.Proto, np.What, np.Port}
		err := s.bind(p.network, p.port)
		if err == nil {
			continue
		}
		name := fmt.Sprintf("%s port %d (%s)", strings.ToUpper(p.network), p.port, p.what)
		if !errors.Is(err, syscall.EADDRINUSE) {
			ps = append(ps, Problem{CheckPorts, fmt.Sprintf("cannot bind %s: %v", name, err), "free the port"})
			continue
		}
		problem := name + " is in use"
		if h := s.portHolders(p.network, p.port); len(h) > 0 {
			problem += " by " + strings.Join(h, ", ")
		}
		fix := "stop what holds it (another Kubernetes node on this host?)"
		if p.what == "kube-apiserver" {
			fix += ", or publish the API server on another port with --apiserver-bind-port"
		}
		ps = append(ps, Problem{CheckPorts, problem, fix})
	}
	return ps
}

// portHolders names the processes ("comm (pid N)") that hold a socket bound to port,
// as far as /proc/net and /proc/*/fd tell; a kernel socket (a VXLAN device) has none.
func (s *system) portHolders(network string, port int) []string {
	inodes := map[string]bool{}
	for _, f := range []string{network, network + "6"} {
		data, err := os.ReadFile(s.path("/proc/net/" + f))
		if err != nil {
			continue
		}
		for _, ino := range socketInodes(string(data), network, port) {
			inodes[ino] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	procs, _ := os.ReadDir(s.path("/proc"))
	var holders []string
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := s.path(fmt.Sprintf("/proc/%d/fd", pid))
		fds, _ := os.ReadDir(fdDir)
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				comm, _ := os.ReadFile(s.path(fmt.Sprintf("/proc/%d/comm", pid)))
				holders = append(holders, fmt.Sprintf("%s (pid %d)", strings.TrimSpace(string(comm)), pid))
				break
			}
		}
	}
	return holders
}

// socketInodes parses /proc/net/{tcp,udp}[6]: the inodes of sockets bound to port,
// listening ones only for TCP (state 0A).
func socketInodes(table, network string, port int) []string {
	var out []string
	for i, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 10 {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		if p, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(p) != port {
			continue
		}
		if network == "tcp" && f[3] != "0A" {
			continue
		}
		if f[9] != "0" {
			out = append(out, f[9])
		}
	}
	return out
}

func (s *system) checkExistingCluster() []Problem {
	var found []string
	if _, err := os.Stat(s.path(paths.AdminKubeconfig)); err == nil {
		found = append(found, paths.AdminKubeconfig+" exists")
	}
	manifests := filepath.Join(paths.KubernetesDir, "manifests")
	if ents, err := os.ReadDir(s.path(manifests)); err == nil && len(ents) > 0 {
		found = append(found, manifests+" is not empty")
	}
	if _, err := os.Stat(s.path(paths.State)); err == nil {
		found = append(found, paths.State+" exists")
	}
	if data, err := os.ReadFile(s.path(paths.SupervisorPIDFile)); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
			if _, err := os.Stat(s.path(fmt.Sprintf("/proc/%d", pid))); err == nil {
				found = append(found, fmt.Sprintf("the u7s supervisor runs (pid %d)", pid))
			}
		}
	}
	if len(found) == 0 {
		return nil
	}
	return []Problem{{CheckExistingCluster,
		"a cluster already exists on this host (" + strings.Join(found, "; ") + ")", "run u7s reset first"}}
}

func (s *system) checkCIDRs(o PreflightOptions) []Problem {
	type cidr struct {
		name, flag string
		p          netip.Prefix
	}
	var cidrs []cidr
	if o.PodCIDR.IsValid() {
		cidrs = append(cidrs, cidr{"pod CIDR", "--pod-network-cidr", o.PodCIDR.Masked()})
	}
	if o.ServiceCIDR.IsValid() {
		cidrs = append(cidrs, cidr{"service CIDR", "--service-cidr", o.ServiceCIDR.Masked()})
	}
	if len(cidrs) == 0 {
		return nil
	}
	var ps []Problem
	if len(cidrs) == 2 && cidrs[0].p.Overlaps(cidrs[1].p) {
		ps = append(ps, Problem{CheckCIDRs,
			fmt.Sprintf("pod CIDR %s overlaps service CIDR %s", cidrs[0].p, cidrs[1].p),
			"choose disjoint ranges with --pod-network-cidr and --service-cidr"})
	}
	nets, err := s.hostNets()
	if err != nil {
		ps = append(ps, Problem{CheckCIDRs, "cannot list the host's addresses and routes: " + err.Error(),
			"run u7s init as root in the host's network namespace"})
	}
	if err == nil {
		// The namespace's own network is chosen to overlap neither them nor the host's.
		var avoid []netip.Prefix
		for _, c := range cidrs {
			avoid = append(avoid, c.p)
		}
		if _, err := s.chooseNamespaceNetwork(avoid); err != nil {
			ps = append(ps, Problem{CheckCIDRs, err.Error(), "choose other ranges with --pod-network-cidr and --service-cidr"})
		}
	}
	for _, c := range cidrs {
		for _, n := range nets {
			if n.prefix.Bits() == 0 || !c.p.Overlaps(n.prefix) {
				continue // a default route overlaps everything and says nothing
			}
			ps = append(ps, Problem{CheckCIDRs,
				fmt.Sprintf("%s %s overlaps the host's %s", c.name, c.p, n.what),
				"choose a range the host's networks do not use with " + c.flag})
		}
	}
	return ps
}
