package host

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/u7s/u7s/internal/paths"
)

// write creates root/p with content, making its directories.
func write(t *testing.T, root, p, content string) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, root, p string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// fakeUsers stands in for /etc/passwd and /etc/group, and useradd/usermod/userdel for it.
type fakeUsers struct {
	t      *testing.T
	root   string
	users  map[string]*user.User
	groups map[string]bool
	cmds   []string
}

func (f *fakeUsers) lookupUser(name string) (*user.User, error) {
	if u, ok := f.users[name]; ok {
		return u, nil
	}
	return nil, user.UnknownUserError(name)
}

func (f *fakeUsers) lookupGroup(name string) (*user.Group, error) {
	if f.groups[name] {
		return &user.Group{Name: name, Gid: "990"}, nil
	}
	return nil, user.UnknownGroupError(name)
}

func (f *fakeUsers) run(name string, args ...string) ([]byte, error) {
	f.cmds = append(f.cmds, name+" "+strings.Join(args, " "))
	user := args[len(args)-1]
	switch name {
	case "useradd":
		home := args[slices.Index(args, "--home-dir")+1]
		f.users[user] = &user_{Username: user, Uid: "990", Gid: "990", HomeDir: home}
		if err := os.MkdirAll(filepath.Join(f.root, home), 0o700); err != nil {
			return nil, err
		}
	case "usermod":
		for i, a := range args {
			file := map[string]string{"--add-subuids": subuidFile, "--add-subgids": subgidFile}[a]
			if file == "" {
				continue
			}
			first, last, _ := strings.Cut(args[i+1], "-")
			a, _ := strconv.Atoi(first)
			b, _ := strconv.Atoi(last)
			old, _ := os.ReadFile(filepath.Join(f.root, file))
			write(f.t, f.root, file, string(old)+fmt.Sprintf("%s:%d:%d\n", user, a, b-a+1))
		}
	case "userdel":
		delete(f.users, user)
	}
	return nil, nil
}

type user_ = user.User

func newUserSystem(t *testing.T) (*system, *fakeUsers) {
	root := t.TempDir()
	f := &fakeUsers{t: t, root: root, users: map[string]*user.User{}, groups: map[string]bool{}}
	write(t, root, "/usr/sbin/nologin", "")
	return &system{root: root, run: f.run, lookupUser: f.lookupUser, lookupGroup: f.lookupGroup}, f
}

func TestCheckRoot(t *testing.T) {
	for _, tc := range []struct {
		euid int
		want int
	}{{0, 0}, {1000, 1}} {
		s := &system{euid: func() int { return tc.euid }}
		if got := s.checkRoot(); len(got) != tc.want {
			t.Errorf("euid %d: %v", tc.euid, got)
		}
	}
	got := (&system{euid: func() int { return 1 }}).checkRoot()[0].String()
	if got != "u7s init must run as root: try sudo u7s init" {
		t.Errorf("message %q", got)
	}
}

func TestCheckUIDMap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own a setuid-root file")
	}
	dir := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	setuid := mk("setuid", 0o755|os.ModeSetuid)
	plain := mk("plain", 0o755)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"both setuid", map[string]string{"newuidmap": setuid, "newgidmap": setuid}, nil},
		{"missing", map[string]string{"newuidmap": setuid}, []string{"newgidmap not found"}},
		{"not setuid", map[string]string{"newuidmap": plain, "newgidmap": setuid}, []string{plain + " is neither setuid root nor has file capabilities"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &system{lookPath: func(f string) (string, error) {
				if p, ok := tc.files[f]; ok {
					return p, nil
				}
				return "", exec.ErrNotFound
			}}
			var got []string
			for _, p := range s.checkUIDMap() {
				got = append(got, p.Problem)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCheckUserNS(t *testing.T) {
	probeErr := errors.New("operation not permitted")
	for _, tc := range []struct {
		name    string
		sysctls map[string]string
		probe   error
		want    []string // substrings, one per problem
	}{
		{"ok", map[string]string{"user/max_user_namespaces": "1000"}, nil, nil},
		{"ok debian", map[string]string{"user/max_user_namespaces": "1000", "kernel/unprivileged_userns_clone": "1"}, nil, nil},
		{"no userns", map[string]string{}, nil, []string{"no user namespaces"}},
		{"disabled", map[string]string{"user/max_user_namespaces": "0"}, nil, []string{"max_user_namespaces = 0"}},
		{"unprivileged off", map[string]string{"user/max_user_namespaces": "1000", "kernel/unprivileged_userns_clone": "0"}, nil,
			[]string{"unprivileged_userns_clone = 0"}},
		{"apparmor", map[string]string{"user/max_user_namespaces": "1000", "kernel/apparmor_restrict_unprivileged_userns": "1"}, nil,
			[]string{"AppArmor"}},
		{"probe fails", map[string]string{"user/max_user_namespaces": "1000"}, probeErr, []string{"cannot create a user namespace (operation not permitted)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for k, v := range tc.sysctls {
				write(t, root, "/proc/sys/"+k, v+"\n")
			}
			probed := false
			s := &system{root: root, tryUserns: func() error { probed = true; return tc.probe }}
			got := s.checkUserNS()
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %d problem(s)", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i].Problem, w) {
					t.Errorf("problem %q does not say %q", got[i].Problem, w)
				}
			}
			if wantProbe := len(tc.want) == 0 || tc.probe != nil; probed != wantProbe {
				t.Errorf("probed = %v, want %v (probe only when the sysctls allow it)", probed, wantProbe)
			}
		})
	}
}

func TestCheckTun(t *testing.T) {
	root := t.TempDir()
	s := &system{root: root}
	if got := s.checkTun(); len(got) != 1 {
		t.Errorf("missing tun: %v", got)
	}
	write(t, root, "/dev/net/tun", "")
	if got := s.checkTun(); len(got) != 1 {
		t.Errorf("regular file as tun: %v", got)
	}
	os.Remove(filepath.Join(root, "/dev/net/tun"))
	if err := syscall.Mknod(filepath.Join(root, "/dev/net/tun"), syscall.S_IFCHR|0o666, 10<<8|200); err != nil {
		t.Skipf("cannot make a device node here: %v", err)
	}
	if got := s.checkTun(); len(got) != 0 {
		t.Errorf("char device: %v", got)
	}
}

func TestCheckBinaries(t *testing.T) {
	root := t.TempDir()
	s := &system{root: root, lookPath: func(f string) (string, error) {
		if f == "conmon" {
			return "", exec.ErrNotFound
		}
		return "/usr/bin/" + f, nil
	}}
	write(t, root, filepath.Join(paths.LibexecBin, "kubelet"), "")
	os.Chmod(filepath.Join(root, paths.LibexecBin, "kubelet"), 0o755)
	write(t, root, filepath.Join(paths.LibexecBin, "runc"), "") // not executable
	got := s.checkBinaries()
	var msgs []string
	for _, p := range got {
		msgs = append(msgs, p.String())
	}
	want := []string{
		"conmon not found: install the conmon package (apt-get install conmon)",
		"node binaries missing from /usr/libexec/u7s/bin: crio, pinns, runc: run make install in the u7s source tree (it builds and installs them)",
	}
	if !slices.Equal(msgs, want) {
		t.Errorf("got\n%q\nwant\n%q", msgs, want)
	}
}

const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0951 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 0100007F:192B 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
`

func TestSocketInodes(t *testing.T) {
	for _, tc := range []struct {
		network string
		port    int
		want    []string
	}{
		{"tcp", 6443, []string{"4242"}}, // the established one (state 01) is not a listener
		{"tcp", 2385, []string{"4343"}},
		{"tcp", 10250, nil},
		{"udp", 6443, []string{"4242", "4444"}},
	} {
		if got := socketInodes(procNetTCP, tc.network, tc.port); !slices.Equal(got, tc.want) {
			t.Errorf("%s/%d: got %v, want %v", tc.network, tc.port, got, tc.want)
		}
	}
}

func fakeProc(t *testing.T, root string) {
	write(t, root, "/proc/net/tcp", procNetTCP)
	write(t, root, "/proc/net/tcp6", "header\n")
	write(t, root, "/proc/net/udp", "header\n   0: 00000000:2118 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 0 2 0000000000000000 0\n")
	write(t, root, "/proc/1234/comm", "kube-apiserver\n")
	write(t, root, "/proc/99/comm", "bash\n")
	for pid, links := range map[int][]string{1234: {"/dev/null", "socket:[4242]"}, 99: {"socket:[1]"}} {
		dir := filepath.Join(root, fmt.Sprintf("/proc/%d/fd", pid))
		os.MkdirAll(dir, 0o755)
		for i, l := range links {
			if err := os.Symlink(l, filepath.Join(dir, strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestCheckPorts(t *testing.T) {
	root := t.TempDir()
	fakeProc(t, root)
	busy := map[string]bool{"tcp/6443": true, "udp/8472": true}
	var bound []string
	s := &system{root: root, bind: func(network string, port int) error {
		key := fmt.Sprintf("%s/%d", network, port)
		bound = append(bound, key)
		if busy[key] {
			return &os.SyscallError{Syscall: "bind", Err: syscall.EADDRINUSE}
		}
		return nil
	}}
	var msgs []string
	for _, p := range s.checkPorts(PreflightOptions{}) {
		msgs = append(msgs, p.Problem)
	}
	want := []string{
		"TCP port 6443 (kube-apiserver) is in use by kube-apiserver (pid 1234)",
		"UDP port 8472 (flannel VXLAN) is in use", // a kernel socket: inode 0, nobody to name
	}
	if !slices.Equal(msgs, want) {
		t.Errorf("got %q, want %q", msgs, want)
	}
	bound = nil
	s.checkPorts(PreflightOptions{APIServerPort: 16443})
	if !slices.Contains(bound, "tcp/16443") || slices.Contains(bound, "tcp/6443") {
		t.Errorf("chosen API server port not checked: %v", bound)
	}
	bound = nil
	s.checkPorts(PreflightOptions{Worker: true})
	if want := []string{"tcp/10250", "tcp/10256", "udp/8472"}; !slices.Equal(bound, want) {
		t.Errorf("worker checks %v, want %v", bound, want)
	}
}

func TestCheckExistingCluster(t *testing.T) {
	root := t.TempDir()
	s := &system{root: root}
	if got := s.checkExistingCluster(); got != nil {
		t.Fatalf("clean host: %v", got)
	}
	write(t, root, paths.SupervisorPIDFile, "777\n") // stale: no /proc/777
	os.MkdirAll(filepath.Join(root, paths.KubernetesDir, "manifests"), 0o755)
	if got := s.checkExistingCluster(); got != nil {
		t.Fatalf("stale pid file and empty manifests: %v", got)
	}
	write(t, root, paths.AdminKubeconfig, "")
	write(t, root, filepath.Join(paths.KubernetesDir, "manifests/etcd.yaml"), "")
	os.MkdirAll(filepath.Join(root, paths.State), 0o755)
	os.MkdirAll(filepath.Join(root, "/proc/777"), 0o755)
	got := s.checkExistingCluster()
	want := "a cluster already exists on this host (/etc/kubernetes/admin.conf exists; /etc/kubernetes/manifests is not empty; " +
		paths.State + " exists; the u7s supervisor runs (pid 777)): run u7s reset first"
	if len(got) != 1 || got[0].String() != want {
		t.Errorf("got %v\nwant %s", got, want)
	}
}

func TestCheckCIDRs(t *testing.T) {
	nets := []hostNet{
		{netip.MustParsePrefix("0.0.0.0/0"), "default route"},
		{netip.MustParsePrefix("192.168.1.0/24"), "address 192.168.1.5/24 on eth0"},
		{netip.MustParsePrefix("172.17.0.0/16"), "route 172.17.0.0/16 dev docker0"},
	}
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name         string
		pod, service netip.Prefix
		wantProblems []string
	}{
		{"defaults", p("10.244.0.0/16"), p("10.96.0.0/12"), nil},
		{"unset", netip.Prefix{}, netip.Prefix{}, nil},
		{"overlap each other", p("10.96.0.0/16"), p("10.96.0.0/12"), []string{"pod CIDR 10.96.0.0/16 overlaps service CIDR 10.96.0.0/12"}},
		{"slirp's network: the namespace takes another", p("10.0.0.0/16"), p("10.96.0.0/12"), nil},
		{"no network left for the namespace", p("10.0.0.0/16"), p("192.168.0.0/16"), []string{
			"no /24 of 10.0.0.0/16 or 192.168.0.0/16 is free for the node's namespace",
			"service CIDR 192.168.0.0/16 overlaps the host's address 192.168.1.5/24 on eth0"}},
		{"host address", p("10.244.0.0/16"), p("192.168.0.0/16"), []string{"service CIDR 192.168.0.0/16 overlaps the host's address 192.168.1.5/24 on eth0"}},
		{"host route, unmasked", p("172.17.5.1/24"), p("10.96.0.0/12"), []string{"pod CIDR 172.17.5.0/24 overlaps the host's route 172.17.0.0/16 dev docker0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &system{hostNets: func() ([]hostNet, error) { return nets, nil }}
			var got []string
			for _, pr := range s.checkCIDRs(PreflightOptions{PodCIDR: tc.pod, ServiceCIDR: tc.service}) {
				got = append(got, pr.Problem)
			}
			if len(got) != len(tc.wantProblems) {
				t.Fatalf("got %q, want %q", got, tc.wantProblems)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.wantProblems[i]) {
					t.Errorf("got %q, want %q", got[i], tc.wantProblems[i])
				}
			}
		})
	}
}

func TestPreflightCollectsAndIgnores(t *testing.T) {
	root := t.TempDir()
	s := &system{
		root:      root,
		euid:      func() int { return 1000 },
		lookPath:  func(f string) (string, error) { return "", exec.ErrNotFound },
		bind:      func(string, int) error { return nil },
		hostNets:  func() ([]hostNet, error) { return nil, nil },
		tryUserns: func() error { return nil },
		ipset:     func() error { return syscall.EPROTONOSUPPORT },
	}
	write(t, root, "/proc/sys/user/max_user_namespaces", "100")
	err := s.preflight(PreflightOptions{})
	var pe *PreflightError
	if !errors.As(err, &pe) {
		t.Fatalf("want a PreflightError, got %v", err)
	}
	checks := map[string]bool{}
	for _, p := range pe.Problems {
		checks[p.Check] = true
	}
	for _, c := range []string{CheckRoot, CheckUIDMap, CheckTun, CheckBinaries, CheckIPSet} {
		if !checks[c] {
			t.Errorf("no %s problem in %v", c, err)
		}
	}
	if !strings.Contains(err.Error(), "\n  - u7s init must run as root: try sudo u7s init") {
		t.Errorf("error does not list the problem with its fix:\n%v", err)
	}
}

func TestAllocate(t *testing.T) {
	r := func(s, c int) IDRange { return IDRange{s, c} }
	for _, tc := range []struct {
		name  string
		used  []IDRange
		count int
		want  IDRange
	}{
		{"empty", nil, 262144, r(131072, 262144)},
		{"after debian users", []IDRange{r(100000, 65536), r(165536, 65536)}, 262144, r(262144, 262144)},
		{"gap fits", []IDRange{r(100000, 10), r(1000000, 65536)}, 262144, r(131072, 262144)},
		{"gap too small", []IDRange{r(100000, 10), r(300000, 65536)}, 262144, r(393216, 262144)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := allocate(tc.used, tc.count)
			if err != nil || got != tc.want {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if _, err := allocate([]IDRange{r(0, subIDMax)}, 65536); err == nil {
		t.Error("full id space: want an error")
	}
}

func TestParseSubIDs(t *testing.T) {
	got := parseSubIDs("# comment\nalice:100000:65536\n\nbad line\n1001:165536:65536\nzero:1:0\n")
	want := []subIDEntry{{"alice", IDRange{100000, 65536}}, {"1001", IDRange{165536, 65536}}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestEnsureUserCreates(t *testing.T) {
	s, f := newUserSystem(t)
	write(t, s.root, subuidFile, "alice:100000:65536\n")
	write(t, s.root, subgidFile, "alice:100000:65536\nbob:165536:65536\n")
	u, err := s.ensureUser(paths.User, paths.Home)
	if err != nil {
		t.Fatal(err)
	}
	want := User{Name: paths.User, UID: 990, GID: 990, Home: paths.Home, SubUID: IDRange{262144, DefaultSubIDs}, SubGID: IDRange{262144, DefaultSubIDs}}
	if u != want {
		t.Errorf("got %+v, want %+v", u, want)
	}
	wantCmds := []string{
		"useradd --system --create-home --home-dir " + paths.Home + " --shell /usr/sbin/nologin --comment u7s rootless Kubernetes node --user-group " + paths.User,
		"usermod --add-subuids 262144-524287 --add-subgids 262144-524287 " + paths.User,
	}
	if !slices.Equal(f.cmds, wantCmds) {
		t.Errorf("commands\n%q\nwant\n%q", f.cmds, wantCmds)
	}
	st, _ := s.loadState()
	if !st.CreatedUser || len(st.AddedSubUIDs) != 1 || len(st.AddedSubGIDs) != 1 {
		t.Errorf("state %+v", st)
	}
	// Again: nothing to do.
	f.cmds = nil
	if u2, err := s.ensureUser(paths.User, paths.Home); err != nil || u2 != want || f.cmds != nil {
		t.Errorf("second run: %+v %v %q", u2, err, f.cmds)
	}

	if err := s.removeUser(paths.User); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s.root, subuidFile); got != "alice:100000:65536\n" {
		t.Errorf("subuid after remove: %q", got)
	}
	if got := read(t, s.root, subgidFile); got != "alice:100000:65536\nbob:165536:65536\n" {
		t.Errorf("subgid after remove: %q", got)
	}
	if _, err := os.Stat(filepath.Join(s.root, paths.HostStateFile)); !os.IsNotExist(err) {
		t.Errorf("state file left after remove: %v", err)
	}
	// Removing again, user gone: fine.
	if err := s.removeUser(paths.User); err != nil {
		t.Errorf("second remove: %v", err)
	}
}

func TestEnsureUserExisting(t *testing.T) {
	s, f := newUserSystem(t)
	f.users[paths.User] = &user.User{Username: paths.User, Uid: "500", Gid: "500", HomeDir: paths.Home}
	f.groups[paths.User] = true
	// Enough uids under the numeric uid, too few gids: only gids are added.
	write(t, s.root, subuidFile, "500:100000:65536\n")
	write(t, s.root, subgidFile, "# local\n"+paths.User+":100000:1000\n")
	u, err := s.ensureUser(paths.User, paths.Home)
	if err != nil {
		t.Fatal(err)
	}
	if u.SubUID != (IDRange{100000, 65536}) || u.SubGID != (IDRange{196608, DefaultSubIDs}) {
		t.Errorf("got %+v", u)
	}
	if want := []string{"usermod --add-subgids 196608-458751 " + paths.User}; !slices.Equal(f.cmds, want) {
		t.Errorf("commands %q, want %q", f.cmds, want)
	}
	if fi, err := os.Stat(filepath.Join(s.root, paths.Home)); err != nil || !fi.IsDir() {
		t.Errorf("home not made: %v", err)
	}
	// Reset keeps the user it did not create and removes only the range it added.
	f.cmds = nil
	if err := s.removeUser(paths.User); err != nil {
		t.Fatal(err)
	}
	if f.cmds != nil {
		t.Errorf("ran %q on a user u7s did not create", f.cmds)
	}
	if got := read(t, s.root, subgidFile); got != "# local\n"+paths.User+":100000:1000\n" {
		t.Errorf("subgid after remove: %q", got)
	}

	f.users[paths.User].HomeDir = "/home/other"
	if _, err := s.ensureUser(paths.User, paths.Home); err == nil || !strings.Contains(err.Error(), "usermod --move-home") {
		t.Errorf("wrong home: %v", err)
	}
}

func TestEnsureUserLeftoverGroup(t *testing.T) {
	s, f := newUserSystem(t)
	f.groups[paths.User] = true
	if _, err := s.ensureUser(paths.User, paths.Home); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(f.cmds[0], "--gid "+paths.User) {
		t.Errorf("useradd with a leftover group: %q", f.cmds[0])
	}
}

func TestSysctls(t *testing.T) {
	root := t.TempDir()
	initial := map[string]string{
		"net/ipv4/ip_forward":           "0",
		"net/ipv4/ping_group_range":     "1\t0",
		"net/ipv4/conf/all/rp_filter":   "1",
		"fs/inotify/max_user_instances": "128",
		"fs/inotify/max_user_watches":   "1048576", // already more than needed
		"kernel/keys/maxkeys":           "200",
	} // kernel.keys.maxbytes absent: skipped
	for k, v := range initial {
		write(t, root, "/proc/sys/"+k, v+"\n")
	}
	s := &system{root: root}
	applied, err := s.applySysctls(hostSysctls)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, c := range applied.Changed {
		keys = append(keys, c.Key)
	}
	want := []string{"net.ipv4.ip_forward", "net.ipv4.ping_group_range", "net.ipv4.conf.all.rp_filter", "fs.inotify.max_user_instances", "kernel.keys.maxkeys"}
	if !slices.Equal(keys, want) {
		t.Errorf("changed %v, want %v", keys, want)
	}
	for k, v := range map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/ping_group_range": "0 2147483647",
		"net/ipv4/conf/all/rp_filter": "2", "fs/inotify/max_user_instances": "8192", "fs/inotify/max_user_watches": "1048576"} {
		if got := strings.TrimSpace(read(t, root, "/proc/sys/"+k)); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	conf := read(t, root, paths.SysctlConf)
	if !strings.Contains(conf, "net.ipv4.ip_forward = 1\n") || strings.Contains(conf, "max_user_watches") {
		t.Errorf("conf:\n%s", conf)
	}
	// Again: nothing changes, the conf and the recorded previous values stay.
	applied, err = s.applySysctls(hostSysctls)
	if err != nil || len(applied.Changed) != 0 {
		t.Errorf("second apply: %+v %v", applied, err)
	}
	if read(t, root, paths.SysctlConf) != conf {
		t.Error("second apply changed the conf")
	}
	// Someone else changes one value later: reset leaves theirs.
	write(t, root, "/proc/sys/fs/inotify/max_user_instances", "9999\n")
	if err := s.restoreSysctls(); err != nil {
		t.Fatal(err)
	}
	for k, v := range initial {
		if k == "fs/inotify/max_user_instances" {
			v = "9999"
		}
		if got := strings.TrimSpace(read(t, root, "/proc/sys/"+k)); normalize(got) != normalize(v) {
			t.Errorf("after restore %s = %q, want %q", k, got, v)
		}
	}
	if _, err := os.Stat(filepath.Join(root, paths.SysctlConf)); !os.IsNotExist(err) {
		t.Error("conf left after restore")
	}
	if st, _ := s.loadState(); len(st.Sysctls) != 0 {
		t.Errorf("state after restore: %+v", st)
	}
}

func TestChooseNamespaceNetwork(t *testing.T) {
	svc, pod := netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("10.244.0.0/16")
	for _, tc := range []struct {
		name  string
		nets  []string
		avoid []netip.Prefix
		want  string
	}{
		{"a host on its own network", []string{"192.0.2.2/24", "127.0.0.0/8"}, []netip.Prefix{pod, svc}, "10.0.2.0/24"},
		{"a host at 10.0.2.15 (qemu's user network)", []string{"10.0.2.15/24", "10.0.2.0/24"}, []netip.Prefix{pod, svc}, "10.0.0.0/24"},
		{"the host uses 10.0.0.0/22", []string{"10.0.1.5/22"}, []netip.Prefix{pod, svc}, "10.0.4.0/24"},
		{"pods in 10.0.0.0/16", []string{"192.0.2.2/24"}, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), svc}, "192.168.0.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &system{hostNets: func() ([]hostNet, error) {
				var out []hostNet
				for _, n := range tc.nets {
					out = append(out, hostNet{netip.MustParsePrefix(n).Masked(), "address " + n})
				}
				return out, nil
			}}
			got, err := s.chooseNamespaceNetwork(tc.avoid)
			if err != nil || got.String() != tc.want {
				t.Fatalf("chose %v, %v; want %s", got, err, tc.want)
			}
			if ip := NamespaceChildIP(got); !got.Contains(ip) || ip.As4()[3] != 100 {
				t.Errorf("child IP %s of %s", ip, got)
			}
		})
	}
	// Nothing free.
	s := &system{hostNets: func() ([]hostNet, error) { return []hostNet{{netip.MustParsePrefix("10.0.0.0/16"), "route"}}, nil }}
	if _, err := s.chooseNamespaceNetwork([]netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}); err == nil || !strings.Contains(err.Error(), "--pod-network-cidr") {
		t.Errorf("with every candidate taken: %v", err)
	}
}
