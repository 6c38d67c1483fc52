// Package hosts makes test hosts on this machine: fresh Debian 12 systems booted with systemd
// in systemd-nspawn containers, all on one bridge, each with its own fixed address, as real
// machines of a small site would be. They share this machine's kernel, and nothing else: each
// has its own root file system (a copy of one cached debootstrap), network, hostname and init.
//
// The fresh-host test runs the README's quick start in one; the multi-host tests boot several
// and install u7s on them the way a user does. VM hosts (vm.go) are qemu machines on the same
// bridge with a kernel of their own, for what a shared kernel cannot give (cgroup v2 here).
package hosts

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/u7s/u7s/internal/fsutil"
)

// The one place for the test network's facts.
const (
	// Bridge joins every host and this machine.
	Bridge = "u7shosts0"
	// Suite is the Debian release of the hosts.
	Suite = "bookworm"
	// Mirror is where debootstrap and the hosts' apt fetch packages.
	Mirror = "http://deb.debian.org/debian"
	// nftTable holds the NAT that lets the hosts reach the mirror and the Go module proxy.
	nftTable = "u7s_hosts"
)

var (
	// Subnet of the bridge; the machine is Gateway, hosts get .11 upwards.
	Subnet  = netip.MustParsePrefix("172.31.77.0/24")
	Gateway = netip.MustParseAddr("172.31.77.1")
	// CacheDir keeps the debootstrapped root between runs (it takes minutes to make).
	CacheDir = "/var/cache/u7s-hosts"
	// StateDir holds each host's disk and settings; RunDir its runner's pid.
	StateDir = "/var/lib/u7s-hosts"
	RunDir   = "/run/u7s-hosts"
)

// Packages a fresh host gets beyond debootstrap's minbase: an init (a machine of this kind
// boots systemd) and make, which the README's first command needs before it installs the rest.
var basePackages = []string{"systemd-sysv", "dbus", "make"}

// Host is one test host's settings, saved in StateDir/NAME/host.json.
type Host struct {
	Name string     `json:"name"`
	Addr netip.Addr `json:"addr"`
	// Binds are systemd-nspawn --bind or --bind-ro arguments (SRC[:DST]) given at every boot.
	Binds   []string `json:"binds,omitempty"`
	BindsRO []string `json:"bindsRO,omitempty"`
	// OwnRegistry: registry.local is not pointed at this machine (the host runs its own).
	OwnRegistry bool `json:"ownRegistry,omitempty"`
	// VM: a qemu machine (vm.go) whose disk overlays the base image Base.
	VM   bool   `json:"vm,omitempty"`
	Base string `json:"base,omitempty"`
	// CPUWeight is the host's share of this machine's CPUs against the other hosts and the
	// tests (cgroup v2's scale, 1-10000, 0 = the default 100), set at every boot.
	CPUWeight int `json:"cpuWeight,omitempty"`
}

func (h *Host) save() error {
	b, _ := json.MarshalIndent(h, "", "  ")
	return fsutil.WriteFileAtomic(hostFile(h.Name), append(b, '\n'), 0o644)
}

// etcHosts is the host's /etc/hosts: its name, and registry.local at this machine.
func etcHosts(h *Host) string {
	s := fmt.Sprintf("127.0.0.1\tlocalhost\n%s\t%s\n", h.Addr, h.Name)
	if !h.OwnRegistry {
		s += fmt.Sprintf("%s\tregistry.local\n", Gateway)
	}
	return s
}

func hostDir(name string) string    { return filepath.Join(StateDir, name) }
func rootfs(name string) string     { return filepath.Join(hostDir(name), "rootfs") }
func hostFile(name string) string   { return filepath.Join(hostDir(name), "host.json") }
func consoleLog(name string) string { return filepath.Join(hostDir(name), "console.log") }
func pidFile(name string) string    { return filepath.Join(RunDir, name+".pid") }
func imageDir() string              { return filepath.Join(CacheDir, Suite+"-minbase") }

// Logf prints progress; the command sets it to stderr.
var Logf = func(format string, args ...any) {}

func validName(n string) error {
	if n == "" || len(n) > 32 || strings.Trim(n, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || n[0] == '-' {
		return fmt.Errorf("host name %q: use lower-case letters, digits and '-' (it becomes the hostname and the node name)", n)
	}
	return nil
}

// Load reads a host's settings.
func Load(name string) (*Host, error) {
	b, err := os.ReadFile(hostFile(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no test host %s: make it with scripts/hosts.sh up %s", name, name)
	}
	if err != nil {
		return nil, err
	}
	var h Host
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%s: %w", hostFile(name), err)
	}
	return &h, nil
}

// List returns the names of every host made.
func List() []string {
	ents, _ := os.ReadDir(StateDir)
	var names []string
	for _, e := range ents {
		if _, err := os.Stat(hostFile(e.Name())); err == nil {
			names = append(names, e.Name())
		}
	}
	return names
}

// run runs a command on this machine, its output in the error when it fails.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// EnsureImage debootstraps the fresh root once; later calls reuse the cache.
func EnsureImage() error {
	dir := imageDir()
	stamp := dir + ".complete"
	want := strings.Join(basePackages, ",")
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == want {
		return nil
	}
	for _, c := range []string{"debootstrap", "systemd-nspawn"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s not found: make host-deps installs it", c)
		}
	}
	Logf("debootstrap %s (minbase + %s) into %s: a few minutes, once", Suite, want, dir)
	start := time.Now()
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(CacheDir, 0o755); err != nil {
		return err
	}
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+want, Suite, tmp, Mirror)
	logf, err := os.Create(dir + ".log")
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap failed (%v): see %s", err, dir+".log")
	}
	if err := prepareImage(tmp); err != nil {
		return err
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	Logf("fresh root ready in %.0fs", time.Since(start).Seconds())
	return fsutil.WriteFileAtomic(stamp, []byte(want+"\n"), 0o644)
}

// EnsureNodeImage is the fresh root with the packages a node runs on (scripts/host-deps.sh
// --list runtime) installed by apt, as a package's dependencies would be: made once, cached
// by the package list.
func EnsureNodeImage() error {
	if err := EnsureImage(); err != nil {
		return err
	}
	out, err := exec.Command(filepath.Join(Root(), "scripts/host-deps.sh"), "--list", "runtime").Output()
	if err != nil {
		return fmt.Errorf("scripts/host-deps.sh --list runtime: %w", err)
	}
	pkgs := strings.Fields(string(out))
	want := strings.Join(pkgs, ",")
	dir := nodeImageDir()
	stamp := dir + ".complete"
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == want {
		return nil
	}
	Logf("installing the node's runtime packages into a copy of the fresh root (%s), once", strings.Join(pkgs, " "))
	start := time.Now()
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := run("cp", "-a", "--reflink=auto", imageDir(), tmp); err != nil {
		return err
	}
	script := "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq --no-install-recommends " +
		strings.Join(pkgs, " ") + " >/dev/null; apt-get clean; rm -rf /var/lib/apt/lists/*"
	cmd := exec.Command("systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", tmp, "--resolv-conf=copy-host",
		"--pipe", "--", "/bin/sh", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("installing the runtime packages: %w\n%s", err, out)
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	Logf("node root ready in %.0fs", time.Since(start).Seconds())
	return fsutil.WriteFileAtomic(stamp, []byte(want+"\n"), 0o644)
}

// installU7s installs u7s into a host's root the way a user does: apt-get install of the .deb
// that make deb built (scripts/hosts.sh makes it first), or deb, its dependencies already there
// from the node image; without a .deb, the install layout (scripts/install.sh, DESTDIR).
func installU7s(root, deb string) error {
	debs, _ := filepath.Glob(filepath.Join(Root(), "_output/u7s_*.deb"))
	if deb != "" {
		if _, err := os.Stat(deb); err != nil {
			return err
		}
		debs = []string{deb}
	}
	if len(debs) == 0 {
		cmd := exec.Command(filepath.Join(Root(), "scripts/install.sh"))
		cmd.Env = append(os.Environ(), "DESTDIR="+root)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("installing u7s into %s: %w\n%s", root, err, out)
		}
		return nil
	}
	deb = debs[len(debs)-1]
	if err := run("cp", deb, filepath.Join(root, "root/u7s.deb")); err != nil {
		return err
	}
	cmd := exec.Command("systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", root, "--pipe", "--",
		"/usr/bin/apt-get", "install", "-y", "-qq", "--no-install-recommends", "/root/u7s.deb")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %s into %s: %w\n%s", filepath.Base(deb), root, err, out)
	}
	return os.Remove(filepath.Join(root, "root/u7s.deb"))
}

// cgroupsUnit makes the container's cgroup v1 hierarchies writable at every boot, as they
// are on a real machine (systemd-nspawn mounts them read-only and does not manage them).
const cgroupsUnit = `[Unit]
Description=Writable cgroup v1 hierarchies (test host: what a real machine has)
DefaultDependencies=no
Before=u7s.service sysinit.target
ConditionPathIsMountPoint=/sys/fs/cgroup/memory

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for h in /sys/fs/cgroup/*/; do mountpoint -q "$h" && mount -o remount,bind,rw,nosuid,nodev,noexec "$h"; done; true'

[Install]
WantedBy=sysinit.target
`

// prepareImage makes what every host has in common: apt sources, networkd, the cgroups unit.
func prepareImage(dir string) error {
	files := map[string]string{
		"etc/apt/sources.list": fmt.Sprintf("deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n",
			Mirror, Suite, Mirror, Suite, Suite),
		"etc/systemd/system/u7s-test-cgroups.service": cgroupsUnit,
		// No console login prompt to wait for.
		"etc/systemd/system/console-getty.service": "",
	}
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if content == "" {
			if err := os.Symlink("/dev/null", full); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			continue
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	links := map[string]string{
		"etc/systemd/system/sysinit.target.wants/u7s-test-cgroups.service":    "/etc/systemd/system/u7s-test-cgroups.service",
		"etc/systemd/system/multi-user.target.wants/systemd-networkd.service": "/lib/systemd/system/systemd-networkd.service",
	}
	for l, target := range links {
		full := filepath.Join(dir, l)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, full); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	// apt's package lists are not kept: a fresh host starts without them.
	return os.RemoveAll(filepath.Join(dir, "var/lib/apt/lists"))
}

// Options of Up.
type Options struct {
	// Binds and BindsRO are passed to systemd-nspawn (SRC[:DST]).
	Binds, BindsRO []string
	// OwnRegistry leaves registry.local out of the host's /etc/hosts.
	OwnRegistry bool
	// Fresh hosts have nothing of u7s: no runtime packages, no u7s installed.
	Fresh bool
	// Deb is the u7s package to install instead of this tree's _output/u7s_*.deb.
	Deb string
	// VM hosts are qemu machines with a kernel of their own (vm.go).
	VM bool
	// CPUWeight is Host.CPUWeight: a host that builds (the fresh host's make) yields to
	// the clusters' etcd, whose deadlines a starved machine misses.
	CPUWeight int
}

// Up makes each named host (once) and boots it, waiting until its systemd runs.
func Up(names []string, o Options) error {
	for _, n := range names {
		if err := validName(n); err != nil {
			return err
		}
	}
	if o.CPUWeight < 0 || o.CPUWeight > 10000 {
		return fmt.Errorf("--cpu-weight %d: want 1 to 10000 (100 is the default share)", o.CPUWeight)
	}
	if o.VM && len(o.Binds)+len(o.BindsRO) > 0 {
		return errors.New("a VM has its own disk: --bind and --bind-ro are for nspawn hosts")
	}
	if err := makeHosts(names, o); err != nil {
		return err
	}
	for _, n := range names {
		if err := Boot(n); err != nil {
			return err
		}
	}
	return nil
}

// makeHosts makes the cached roots, the network and each named host not made yet, holding a lock of
// this machine: end-to-end suites run side by side, and two of them must not debootstrap the same
// root or hand out the same address.
func makeHosts(names []string, o Options) error {
	if err := os.MkdirAll(CacheDir, 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(CacheDir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	ensure := EnsureNodeImage
	if o.Fresh {
		ensure = EnsureImage
	}
	if err := ensure(); err != nil {
		return err
	}
	if err := ensureNetwork(); err != nil {
		return err
	}
	var missing []string
	for _, n := range names {
		if _, err := Load(n); err != nil {
			missing = append(missing, n)
		}
	}
	if !o.VM {
		for _, n := range missing {
			if err := create(n, o); err != nil {
				return fmt.Errorf("making host %s: %w", n, err)
			}
		}
		return nil
	}
	if len(missing) == 0 {
		return nil
	}
	base, err := ensureVMBase(o)
	if err != nil {
		return fmt.Errorf("making the VM base image: %w", err)
	}
	for _, n := range missing {
		if err := createVM(n, o, base); err != nil {
			return fmt.Errorf("making VM %s: %w", n, err)
		}
	}
	return nil
}

// create copies the fresh root and gives it its name, address and registry.local.
func create(name string, o Options) error {
	addr, err := nextAddr()
	if err != nil {
		return err
	}
	Logf("making host %s (%s)", name, addr)
	dir := hostDir(name)
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	src := nodeImageDir()
	if o.Fresh {
		src = imageDir()
	}
	if err := run("cp", "-a", "--reflink=auto", src, rootfs(name)); err != nil {
		return err
	}
	root := rootfs(name)
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	resolv, err := resolvConf()
	if err != nil {
		return err
	}
	h := Host{Name: name, Addr: addr, Binds: o.Binds, BindsRO: o.BindsRO, OwnRegistry: o.OwnRegistry, CPUWeight: o.CPUWeight}
	files := map[string]string{
		"etc/hostname":    name + "\n",
		"etc/machine-id":  hex.EncodeToString(id) + "\n",
		"etc/hosts":       etcHosts(&h),
		"etc/resolv.conf": resolv,
		"etc/systemd/network/10-host0.network": fmt.Sprintf("[Match]\nName=host0\n\n[Network]\nAddress=%s/%d\nGateway=%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
			addr, Subnet.Bits(), Gateway),
	}
	// Each host's system users and subordinate ids differ from the others' and this machine's,
	// as on separate machines: they share one kernel here, its per-uid quotas, and a u7s reset
	// on this machine kills every process of its u7s-admin's ids.
	i := int(addr.As4()[3]) - 10
	defs, err := os.ReadFile(filepath.Join(root, "etc/login.defs"))
	if err != nil {
		return err
	}
	files["etc/login.defs"] = string(defs) + fmt.Sprintf("\n# test host %s: ids apart from the other hosts'\nSYS_UID_MAX %d\nSYS_GID_MAX %d\n", name, 900-10*i, 900-10*i)
	reserved := fmt.Sprintf("test-host-reserved:100000:%d\n", i*1048576)
	files["etc/subuid"], files["etc/subgid"] = reserved, reserved
	for p, content := range files {
		full := filepath.Join(root, p)
		_ = os.Remove(full) // resolv.conf may be a symlink
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	// After the host's files: the package's install script creates u7s-admin by its login.defs.
	if !o.Fresh {
		if err := installU7s(root, o.Deb); err != nil {
			return err
		}
	}
	return h.save()
}

// resolvConf gives the hosts this machine's name servers (they reach them through the NAT).
func resolvConf() (string, error) {
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "nameserver" && !strings.HasPrefix(fs[1], "127.") {
			fmt.Fprintf(&b, "nameserver %s\n", fs[1])
		}
	}
	if b.Len() == 0 {
		return "", errors.New("/etc/resolv.conf names no name server the hosts can reach (only loopback ones)")
	}
	return b.String(), nil
}

// nextAddr is the lowest address from .11 that no host has.
func nextAddr() (netip.Addr, error) {
	used := map[netip.Addr]bool{}
	for _, n := range List() {
		if h, err := Load(n); err == nil {
			used[h.Addr] = true
		}
	}
	a := Subnet.Addr()
	for range 11 {
		a = a.Next()
	}
	for ; Subnet.Contains(a); a = a.Next() {
		if !used[a] && a.As4()[3] != 255 {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address left in %s", Subnet)
}

// ensureNetwork makes the bridge and the NAT out of it; both are removed by Down.
func ensureNetwork() error {
	if err := exec.Command("ip", "link", "show", Bridge).Run(); err != nil {
		if err := run("ip", "link", "add", Bridge, "type", "bridge"); err != nil {
			return err
		}
		if err := run("ip", "addr", "add", fmt.Sprintf("%s/%d", Gateway, Subnet.Bits()), "dev", Bridge); err != nil {
			return err
		}
	}
	if err := run("ip", "link", "set", Bridge, "up"); err != nil {
		return err
	}
	// Forwarding for the hosts' traffic to the outside; the old value is put back by Down.
	old, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return err
	}
	saved := filepath.Join(StateDir, "ip_forward.saved")
	if _, err := os.Stat(saved); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(StateDir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(saved, old, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		return err
	}
	if exec.Command("nft", "list", "table", "ip", nftTable).Run() != nil {
		rules := fmt.Sprintf("table ip %s {\n chain post {\n  type nat hook postrouting priority srcnat;\n  ip saddr %s oifname != %q masquerade\n }\n}\n",
			nftTable, Subnet, Bridge)
		cmd := exec.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft: %w\n%s", err, out)
		}
	}
	return RaiseKernelLimits()
}

// RaiseKernelLimits: /proc/sys is read-only in the containers except net.*, and every
// host's u7s-admin shares this kernel's per-user quotas, so they are raised here, never lowered.
func RaiseKernelLimits() error {
	for k, v := range map[string]int{
		"fs/inotify/max_user_instances": 8192,
		"fs/inotify/max_user_watches":   1048576,
		"kernel/keys/maxkeys":           20000,
		"kernel/keys/maxbytes":          20000000,
	} {
		p := "/proc/sys/" + k
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if cur, _ := strconv.Atoi(strings.TrimSpace(string(b))); cur >= v {
			continue
		}
		if err := os.WriteFile(p, []byte(strconv.Itoa(v)), 0o644); err != nil {
			return fmt.Errorf("raising %s: %w", k, err)
		}
	}
	return nil
}

// runnerPID is the pid of the host's runner, or 0.
func runnerPID(name string) int {
	b, err := os.ReadFile(pidFile(name))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return 0
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmdline), "\x00run\x00"+name) {
		return 0
	}
	return pid
}

// Running says whether the host is booted.
func Running(name string) bool { return runnerPID(name) != 0 }

// Boot starts the host's runner (which boots it again after a reboot from inside) and waits
// for its systemd to run.
func Boot(name string) error {
	h, err := Load(name)
	if err != nil {
		return err
	}
	if err := ensureNetwork(); err != nil {
		return err
	}
	if h.VM {
		if err := ensureTap(h); err != nil {
			return err
		}
	}
	start := time.Now()
	pid := runnerPID(name)
	if pid == 0 {
		if h.VM {
			closeSSH(h)
		}
		Logf("booting %s", name)
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(RunDir, 0o755); err != nil {
			return err
		}
		logf, err := os.OpenFile(consoleLog(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer logf.Close()
		cmd := exec.Command(exe, "run", name)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return err
		}
		pid = cmd.Process.Pid
		if err := os.WriteFile(pidFile(name), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			return err
		}
		_ = cmd.Process.Release()
	}
	if h.VM {
		return waitVM(h, pid, start, vmBootTimeout)
	}
	return waitRunning(h, pid, 2*time.Minute)
}

// alive: pid exists and is not a zombie (a runner that ended stays one until its parent, the
// command that booted it, exits).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// waitRunning waits until the host's systemd is up and its address answers. The runner is
// followed by its pid: just after its start its command line may not be readable yet (the
// kernel sets it up after the exec the parent already saw succeed), so Running could say no.
func waitRunning(h *Host, runner int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	state := ""
	for time.Now().Before(deadline) {
		if !alive(runner) {
			return fmt.Errorf("host %s stopped while booting: see %s", h.Name, consoleLog(h.Name))
		}
		if leader, err := Leader(h.Name); err == nil {
			out, _ := exec.Command("nsenter", "-t", strconv.Itoa(leader), "-a", "systemctl", "is-system-running").Output()
			state = strings.TrimSpace(string(out))
			if state == "running" || state == "degraded" {
				if addrUp(h) {
					return nil
				}
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("host %s did not boot within %s (systemd: %q): see %s", h.Name, timeout, state, consoleLog(h.Name))
}

// addrUp: networkd has put the host's address on its interface.
func addrUp(h *Host) bool {
	leader, err := Leader(h.Name)
	if err != nil {
		return false
	}
	out, _ := exec.Command("nsenter", "-t", strconv.Itoa(leader), "-n", "ip", "-4", "-o", "addr").Output()
	return strings.Contains(string(out), " "+h.Addr.String()+"/")
}

// Leader is the pid of the host's init (systemd), the child of its systemd-nspawn.
func Leader(name string) (int, error) {
	if h, err := Load(name); err == nil && h.VM {
		return 0, fmt.Errorf("host %s is a VM: its init runs under its own kernel, reach it with exec", name)
	}
	runner := runnerPID(name)
	if runner == 0 {
		return 0, fmt.Errorf("host %s is not running: scripts/hosts.sh boot %s", name, name)
	}
	nspawn := childOf(runner)
	if nspawn == 0 {
		return 0, fmt.Errorf("host %s: no systemd-nspawn under its runner (pid %d)", name, runner)
	}
	leader := childOf(nspawn)
	if leader == 0 {
		return 0, fmt.Errorf("host %s: systemd-nspawn (pid %d) has not started its init yet", name, nspawn)
	}
	return leader, nil
}

// childOf is pid's first child (of any of its threads: Go forks from any of them).
func childOf(pid int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			c, _ := strconv.Atoi(f[0])
			return c
		}
	}
	return 0
}

// EnterArgv returns the command line that runs args as root on the host, inside a transient
// scope of its own systemd, with a clean environment, and moves the calling process into the
// host's cgroups first: nsenter changes namespaces, not cgroups, and a process left in the
// machine's cgroups (such as a detached node) would sit outside the host's. The caller execs
// the result, which keeps the standard streams and the exit status. On a VM it is ssh.
func EnterArgv(name string, env []string, args []string) ([]string, error) {
	h, err := Load(name)
	if err != nil {
		return nil, err
	}
	if h.VM {
		return vmEnterArgv(h, env, args)
	}
	leader, err := Leader(name)
	if err != nil {
		return nil, err
	}
	if err := joinCgroupsOf(leader); err != nil {
		return nil, fmt.Errorf("joining the cgroups of host %s: %w", name, err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, err
	}
	full := []string{nsenter, "-t", strconv.Itoa(leader), "-a", "--", "/usr/bin/env", "-i",
		"PATH=" + hostPath, "HOME=/root", "LANG=C.UTF-8", "TERM=" + os.Getenv("TERM")}
	full = append(full, env...)
	full = append(full, "systemd-run", "--scope", "--quiet", "--collect", "--")
	return append(full, args...), nil
}

// hostPath is the PATH of commands run on a host.
const hostPath = "/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// joinCgroupsOf moves this process into pid's cgroup in every hierarchy mounted here.
func joinCgroupsOf(pid int) error {
	for _, dir := range cgroupDirsOf(strconv.Itoa(pid)) {
		p := filepath.Join(dir, "cgroup.procs")
		if err := os.WriteFile(p, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// cgroupDirsOf is, for every hierarchy mounted here, the directory of process pid's cgroup
// ("self" for this one).
func cgroupDirsOf(pid string) []string {
	cg, _ := os.ReadFile("/proc/" + pid + "/cgroup")
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var dirs []string
	for _, line := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if mp := cgroupMount(string(mounts), parts[1]); mp != "" {
			dirs = append(dirs, filepath.Join(mp, parts[2]))
		}
	}
	return dirs
}

// Poweroff shuts the host down cleanly (SIGTERM to its runner: systemd-nspawn's container
// halts, a VM gets its power button pressed) and waits for it, killing it after timeout.
func Poweroff(name string, timeout time.Duration) error {
	pid := runnerPID(name)
	if pid == 0 {
		return nil
	}
	Logf("powering off %s", name)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if runnerPID(name) == 0 {
			emptyCgroups(name)
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	Logf("%s did not power off within %s: killing it", name, timeout)
	if n := childOf(pid); n != 0 {
		_ = syscall.Kill(n, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	time.Sleep(500 * time.Millisecond)
	emptyCgroups(name)
	return nil
}

// Remove powers the named hosts off and removes their disks and cgroups.
func Remove(names []string) error {
	var errs []error
	for _, n := range names {
		h, _ := Load(n)
		_ = Poweroff(n, 30*time.Second)
		if err := removeCgroups(n); err != nil {
			errs = append(errs, err)
		}
		if h != nil && h.VM {
			if err := removeVM(h); err != nil {
				errs = append(errs, err)
			}
		}
		if err := os.RemoveAll(hostDir(n)); err != nil {
			errs = append(errs, err)
		}
		_ = os.Remove(pidFile(n))
	}
	return errors.Join(errs...)
}

// Down removes every host, then the bridge, the NAT and the forwarding setting; safe to
// repeat. The cached fresh root stays.
func Down() error {
	errs := []error{Remove(List())}
	if exec.Command("ip", "link", "show", Bridge).Run() == nil {
		if err := run("ip", "link", "del", Bridge); err != nil {
			errs = append(errs, err)
		}
	}
	if exec.Command("nft", "list", "table", "ip", nftTable).Run() == nil {
		if err := run("nft", "delete", "table", "ip", nftTable); err != nil {
			errs = append(errs, err)
		}
	}
	saved := filepath.Join(StateDir, "ip_forward.saved")
	if b, err := os.ReadFile(saved); err == nil {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", b, 0o644); err != nil {
			errs = append(errs, err)
		}
		_ = os.Remove(saved)
	}
	_ = os.Remove(StateDir)
	_ = os.Remove(RunDir)
	return errors.Join(errs...)
}

// Names in use by hosts' cgroups: one per hierarchy, under the runner's own cgroup.
func cgroupName(name string) string { return "u7s-host-" + name }

// Run is the runner: in a cgroup of its own in every hierarchy (else the container's cgroup
// namespace root would be the machine's), it boots the host with systemd-nspawn, boots it
// again when it reboots itself (exit status 133), and ends when it powers off. A VM's runner
// runs qemu instead, which reboots the guest itself.
func Run(name string) error {
	h, err := Load(name)
	if err != nil {
		return err
	}
	if err := joinOwnCgroups(name, h.CPUWeight); err != nil {
		return err
	}
	if h.VM {
		return runVM(h)
	}
	args := []string{"--quiet", "--register=no", "--keep-unit", "-D", rootfs(name), "-M", name, "-b",
		"--network-bridge=" + Bridge, "--console=read-only", "--resolv-conf=off", "--timezone=off",
		// u7s-admin's subordinate ids must map: no --private-users. nspawn makes the host its own
		// /dev/net/tun (a copy, not a bind: u7s's chmod there must not change this machine's).
		// runc gives every container a session keyring; nspawn filters keyctl out by default.
		"--system-call-filter=@keyring"}
	for _, b := range h.Binds {
		args = append(args, "--bind="+b)
	}
	for _, b := range h.BindsRO {
		args = append(args, "--bind-ro="+b)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	for {
		fmt.Printf("== %s: systemd-nspawn %s\n", time.Now().Format(time.RFC3339), strings.Join(args, " "))
		cmd := exec.Command("systemd-nspawn", args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var werr error
		stopped := false
		select {
		case werr = <-done:
		case <-stop:
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGTERM)
			werr = <-done
		}
		code := 0
		if ee, ok := werr.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		fmt.Printf("== %s: systemd-nspawn exited %d\n", time.Now().Format(time.RFC3339), code)
		if stopped || code != 133 {
			return nil
		}
	}
}

// joinOwnCgroups puts this process into StateDir-named children of its cgroups, in every
// hierarchy it is in (cpuset's cpus and mems copied, as a new cpuset starts empty), with the
// CPU weight (0: the default).
func joinOwnCgroups(name string, weight int) error {
	for _, dir := range ownCgroupDirs(name) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		if f, v := cpuWeightFile(dir, weight); f != "" {
			if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
				return fmt.Errorf("cgroup %s: CPU weight: %w", dir, err)
			}
		}
		if strings.Contains(dir, "/cpuset/") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f)); err == nil {
					_ = os.WriteFile(filepath.Join(dir, f), b, 0o644)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("joining %s: %w", dir, err)
		}
	}
	return nil
}

// cpuWeightFile is the file and value that give a host's cgroup dir the CPU weight w:
// cgroup v1's cpu.shares (1024 is the default) or v2's cpu.weight; none for weight 0 or
// for a hierarchy without the cpu controller.
func cpuWeightFile(dir string, w int) (string, string) {
	if w == 0 {
		return "", ""
	}
	for _, c := range []struct {
		file  string
		value int
	}{{"cpu.shares", max(2, w*1024/100)}, {"cpu.weight", w}} {
		if f := filepath.Join(dir, c.file); exists(f) {
			return f, strconv.Itoa(c.value)
		}
	}
	return "", ""
}

// ownCgroupDirs lists, for every mounted hierarchy this process is in, the directory of the
// host's cgroup below this process's.
func ownCgroupDirs(name string) []string {
	var dirs []string
	for _, cur := range cgroupDirsOf("self") {
		// A runner that was booted before sits in its own cgroup already.
		if filepath.Base(cur) == cgroupName(name) {
			cur = filepath.Dir(cur)
		}
		dirs = append(dirs, filepath.Join(cur, cgroupName(name)))
	}
	return dirs
}

// cgroupMount finds where the hierarchy of controllers ("" for the unified one) is mounted.
func cgroupMount(mountinfo, controllers string) string {
	for _, l := range strings.Split(mountinfo, "\n") {
		left, right, ok := strings.Cut(l, " - ")
		if !ok {
			continue
		}
		f, r := strings.Fields(left), strings.Fields(right)
		if len(f) < 5 || len(r) < 3 || f[3] != "/" {
			continue
		}
		switch {
		case controllers == "" && r[0] == "cgroup2":
			return f[4]
		case controllers != "" && r[0] == "cgroup":
			opts := strings.Split(r[2], ",")
			if !slices.ContainsFunc(strings.Split(controllers, ","), func(c string) bool { return !slices.Contains(opts, c) }) {
				return f[4]
			}
		}
	}
	return ""
}

// emptyCgroup waits (15 s at most) until no process is left in the cgroup dir, killing what
// is: the processes of a host that powered off go a moment after its init.
func emptyCgroup(dir string) {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		pids := strings.Fields(string(b))
		if err != nil || len(pids) == 0 {
			return
		}
		for _, p := range pids {
			if pid, err := strconv.Atoi(p); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cgroupTrees lists, per hierarchy, the host's cgroup and all below it, parents first.
func cgroupTrees(name string) [][]string {
	var trees [][]string
	for _, dir := range ownCgroupDirs(name) {
		var all []string
		_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				all = append(all, p)
			}
			return nil
		})
		trees = append(trees, all)
	}
	return trees
}

// emptyCgroups leaves no process of a powered-off host behind, so that its next boot
// starts in empty cgroups.
func emptyCgroups(name string) {
	for _, tree := range cgroupTrees(name) {
		for _, p := range slices.Backward(tree) {
			emptyCgroup(p)
		}
	}
}

// removeCgroups removes the host's cgroups depth first (the container's own inside them too).
func removeCgroups(name string) error {
	var errs []error
	for _, tree := range cgroupTrees(name) {
		for _, p := range slices.Backward(tree) {
			emptyCgroup(p)
			if err := syscall.Rmdir(p); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", p, err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

func nodeImageDir() string { return filepath.Join(CacheDir, Suite+"-node") }

// Root is the u7s source tree (scripts/hosts.sh sets U7S_ROOT): its install layout and the
// host-deps list of runtime packages.
func Root() string {
	if r := os.Getenv("U7S_ROOT"); r != "" {
		return r
	}
	exe, _ := os.Executable()
	return filepath.Clean(filepath.Join(filepath.Dir(exe), "../.."))
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
