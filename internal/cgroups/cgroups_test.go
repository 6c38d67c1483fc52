package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// hybridMountinfo is this project's test machine (Debian 12, hybrid), with CG for /sys/fs/cgroup.
const hybridMountinfo = `23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
31 23 0:28 / CG rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / CG/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / CG/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / CG/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / CG/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / CG/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / CG/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / CG/blkio ro,relatime - cgroup cgroup rw,blkio
39 31 0:36 / CG/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / CG/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / CG/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / CG/misc rw,relatime - cgroup cgroup rw,misc
`

const hybridCgroup = `10:misc:/
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/59d6
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
`

// fakeHost writes mountinfo and cgroup files; CG in them becomes the fake /sys/fs/cgroup.
func fakeHost(t *testing.T, mountinfo, cgroup string) (cg string, l Layout) {
	t.Helper()
	root := t.TempDir()
	cg = filepath.Join(root, "sys/fs/cgroup")
	write(t, filepath.Join(root, "mountinfo"), strings.ReplaceAll(mountinfo, "CG", cg))
	write(t, filepath.Join(root, "cgroup"), cgroup)
	l, err := detect(filepath.Join(root, "mountinfo"), filepath.Join(root, "cgroup"), cg)
	if err != nil {
		t.Fatal(err)
	}
	return cg, l
}

func TestDetectHybrid(t *testing.T) {
	cg, l := fakeHost(t, hybridMountinfo, hybridCgroup)
	if l.Unified || !l.IsV1() || l.V2 == nil || l.V2.Mountpoint != cg+"/unified" {
		t.Fatalf("hybrid detected as %+v", l)
	}
	var got []string
	for _, h := range l.V1 {
		got = append(got, fmt.Sprintf("%s %s %v", strings.Join(h.Controllers, ","), strings.TrimPrefix(h.Dir, cg), h.ReadOnly))
	}
	want := []string{"misc /misc false", "name=systemd /systemd false", "pids /pids false", "blkio /blkio true", "freezer /freezer false",
		"devices /devices false", "memory /memory/process_api/59d6 false", "cpuset /cpuset false", "cpuacct /cpuacct false", "cpu /cpu false"}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func TestDetectUnified(t *testing.T) {
	cg, l := fakeHost(t, "30 23 0:26 / CG rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
		"0::/system.slice/u7s.service\n")
	if !l.Unified || l.IsV1() || l.V2.Dir != cg+"/system.slice/u7s.service" {
		t.Errorf("got %+v", l)
	}
}

func TestDetectMountRoots(t *testing.T) {
	// A container without a cgroup namespace: the mounts show only its own subtree.
	mi := "32 31 0:29 /docker/abc CG/memory rw - cgroup cgroup rw,memory\n" +
		"33 31 0:30 /docker/abc CG/pids rw - cgroup cgroup rw,pids\n" +
		"34 31 0:31 /docker/abc CG/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
	cg, l := fakeHost(t, mi, "3:memory:/docker/abc/sub\n2:pids:/elsewhere\n1:cpu,cpuacct:/docker/abc\n")
	dirs := map[string]string{}
	for _, h := range l.V1 {
		dirs[strings.Join(h.Controllers, ",")] = h.Dir
	}
	want := map[string]string{"memory": cg + "/memory/sub", "pids": "", "cpu,cpuacct": cg + "/cpu,cpuacct"}
	for k, v := range want {
		if dirs[k] != v {
			t.Errorf("%s: dir %q, want %q", k, dirs[k], v)
		}
	}
}

func TestDetectOvermounted(t *testing.T) {
	// A later tmpfs on /sys/fs/cgroup hides the hierarchies mounted before it.
	mi := "32 31 0:29 / CG/memory rw - cgroup cgroup rw,memory\n50 31 0:60 / CG rw - tmpfs tmpfs rw\n" +
		"51 50 0:61 / CG/pids rw - cgroup cgroup rw,pids\n"
	_, l := fakeHost(t, mi, "2:memory:/\n1:pids:/\n")
	if len(l.V1) != 1 || !l.V1[0].Has("pids") {
		t.Errorf("got %+v", l.V1)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/tail\04`: `/tail\04`, `/x\134y`: `/x\y`} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// fakeCgroupfs makes mkdir add the control files cgroupfs would.
func fakeCgroupfs(t *testing.T) {
	old := mkdirCgroup
	t.Cleanup(func() { mkdirCgroup = old })
	mkdirCgroup = func(p string, perm os.FileMode) error {
		if err := os.Mkdir(p, perm); err != nil {
			return err
		}
		files := []string{"cgroup.procs", "tasks", "notify_on_release", "cgroup.clone_children"}
		switch {
		case strings.Contains(p, "/cpuset/"):
			files = append(files, "cpuset.cpus", "cpuset.mems")
		case strings.Contains(p, "/memory/"):
			files = append(files, "memory.use_hierarchy", "memory.limit_in_bytes")
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(p, f), nil, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

func owner(t *testing.T, p string) (int, int) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

func TestDelegateV1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	fakeCgroupfs(t)
	cg, l := fakeHost(t, hybridMountinfo, hybridCgroup)
	for _, h := range l.V1 {
		os.MkdirAll(h.Dir, 0o755)
	}
	write(t, cg+"/cpuset/cpuset.cpus", "0-1\n")
	write(t, cg+"/cpuset/cpuset.mems", "0\n")
	const uid, gid = 4242, 4343

	d, err := delegateV1(l, "u7s", uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, dir := range d.Dirs {
		got = append(got, strings.Join(dir.Controllers, ",")+"@"+dir.MountName+"="+strings.TrimPrefix(dir.Path, cg))
	}
	want := []string{"name=systemd@systemd=/systemd/u7s", "pids@pids=/pids/u7s", "freezer@freezer=/freezer/u7s", "devices@devices=/devices/u7s",
		"memory@memory=/memory/process_api/59d6/u7s", "cpuset@cpuset=/cpuset/u7s", "cpuacct@cpuacct=/cpuacct/u7s", "cpu@cpu=/cpu/u7s"}
	if !slices.Equal(got, want) {
		t.Errorf("dirs\n%q\nwant\n%q", got, want)
	}
	if len(d.Skipped) != 2 || !strings.HasPrefix(d.Skipped[0], "misc: not used") || !strings.HasPrefix(d.Skipped[1], "blkio: mounted read-only") {
		t.Errorf("skipped %q", d.Skipped)
	}
	if v := read(t, cg+"/cpuset/u7s/cpuset.cpus"); v != "0-1" {
		t.Errorf("cpuset.cpus %q", v)
	}
	if v := read(t, cg+"/cpuset/u7s/cgroup.clone_children"); v != "1" {
		t.Errorf("clone_children %q", v)
	}
	if v := read(t, cg+"/memory/process_api/59d6/u7s/memory.use_hierarchy"); v != "1" {
		t.Errorf("use_hierarchy %q", v)
	}
	for _, p := range []string{"/memory/process_api/59d6/u7s", "/memory/process_api/59d6/u7s/cgroup.procs", "/memory/process_api/59d6/u7s/memory.limit_in_bytes", "/cpu/u7s/tasks"} {
		if u, g := owner(t, cg+p); u != uid || g != gid {
			t.Errorf("%s owned by %d:%d", p, u, g)
		}
	}
	if u, _ := owner(t, cg+"/memory/process_api/59d6"); u != 0 {
		t.Error("the parent cgroup was given away")
	}

	// Again: the same result, the user's children untouched.
	os.Mkdir(cg+"/cpu/u7s/kubepods", 0o755)
	d2, err := delegateV1(l, "u7s", uid, gid)
	if err != nil || !slices.EqualFunc(d.Dirs, d2.Dirs, func(a, b DelegatedDir) bool { return a.Path == b.Path }) {
		t.Errorf("second run: %+v %v", d2, err)
	}
	if u, _ := owner(t, cg+"/cpu/u7s/kubepods"); u != 0 {
		t.Error("a child cgroup was chowned")
	}

	// Join writes the pid into every cgroup.procs.
	if err := d.Join(1234); err != nil {
		t.Fatal(err)
	}
	if v := read(t, cg+"/memory/process_api/59d6/u7s/cgroup.procs"); v != "1234" {
		t.Errorf("cgroup.procs %q", v)
	}
}

func TestDelegateV1RequiredMissing(t *testing.T) {
	fakeCgroupfs(t)
	// memory read-only, as in a systemd-nspawn container.
	mi := strings.Replace(hybridMountinfo, "CG/memory rw,relatime", "CG/memory ro,relatime", 1)
	cg, l := fakeHost(t, mi, hybridCgroup)
	for _, h := range l.V1 {
		os.MkdirAll(h.Dir, 0o755)
	}
	_, err := delegateV1(l, "u7s", 4242, 4242)
	if err == nil || !strings.Contains(err.Error(), "controllers memory (") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(cg + "/cpu/u7s"); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a cgroup was made although the delegation failed")
	}
	if _, err := delegateV1(Layout{Unified: true}, "u7s", 1, 1); err == nil {
		t.Error("v2: want an error")
	}
	if _, err := delegateV1(l, "../x", 1, 1); err == nil {
		t.Error("bad name: want an error")
	}
}

func TestSaveLoadRemove(t *testing.T) {
	root := t.TempDir()
	// cgroupfs lets rmdir take a cgroup with its control files; here the tree is bare dirs.
	for _, p := range []string{"cpu/u7s/kubepods/burstable/pod1", "cpu/u7s/kubepods/besteffort", "memory/u7s"} {
		os.MkdirAll(filepath.Join(root, p), 0o755)
	}
	d := Delegation{Name: "u7s", UID: 1, GID: 2, Dirs: []DelegatedDir{
		{Controllers: []string{"cpu"}, MountName: "cpu", Path: filepath.Join(root, "cpu/u7s")},
		{Controllers: []string{"memory"}, MountName: "memory", Path: filepath.Join(root, "memory/u7s")},
	}}
	file := filepath.Join(root, "etc/delegation.json")
	if err := d.save(file); err != nil {
		t.Fatal(err)
	}
	got, err := loadDelegation(file)
	if err != nil || got.Name != "u7s" || got.UID != 1 || got.GID != 2 || len(got.Dirs) != 2 || got.Dirs[1].Path != d.Dirs[1].Path {
		t.Fatalf("loaded %+v %v", got, err)
	}
	if err := got.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"cpu/u7s", "memory/u7s", "etc/delegation.json"} {
		if _, err := os.Stat(filepath.Join(root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "cpu")); err != nil {
		t.Error("the parent was removed")
	}
	if err := got.Remove(); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if _, err := loadDelegation(file); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("load after remove: %v", err)
	}
}

type mountCall struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func TestMountV1(t *testing.T) {
	d := Delegation{Dirs: []DelegatedDir{
		{Controllers: []string{"cpu", "cpuacct"}, MountName: "cpu,cpuacct"},
		{Controllers: []string{"memory"}, MountName: "memory"},
		{Controllers: []string{"name=systemd"}, MountName: "systemd"},
	}}
	for _, tc := range []struct {
		name, cgroup, wantErr string
	}{
		{"in cgroupns", "5:name=systemd:/\n3:memory:/\n2:cpu,cpuacct:/\n0::/\n", ""},
		{"not joined", "5:name=systemd:/\n3:memory:/u7s\n2:cpu,cpuacct:/\n0::/\n", "in memory this process is at /u7s"},
		{"outside the namespace root", "5:name=systemd:/\n3:memory:/../x\n2:cpu,cpuacct:/\n", "at /../x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()

			write(t, filepath.Join(root, "proc-cgroup"), tc.cgroup)
			var calls []mountCall
			err := mountV1(d, filepath.Join(root, "fs"), filepath.Join(root, "proc-cgroup"), func(s, tg, f string, fl uintptr, data string) error {
				calls = append(calls, mountCall{s, strings.TrimPrefix(tg, root), f, fl, data})
				return nil
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || calls != nil {
					t.Fatalf("got %v after %d mounts, want %q", err, len(calls), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := []mountCall{
				{"tmpfs", "/fs", "tmpfs", mountFlags, "mode=755"},
				{"cgroup", "/fs/cpu,cpuacct", "cgroup", mountFlags, "cpu,cpuacct"},
				{"cgroup", "/fs/memory", "cgroup", mountFlags, "memory"},
				{"cgroup", "/fs/systemd", "cgroup", mountFlags, "name=systemd"},
				{"", "/fs", "", syscall.MS_REMOUNT | syscall.MS_RDONLY | mountFlags, "mode=755"},
			}
			if !slices.Equal(calls, want) {
				t.Errorf("mounts\n%v\nwant\n%v", calls, want)
			}
			for _, l := range []string{"cpu", "cpuacct"} {
				if dst, err := os.Readlink(filepath.Join(root, "fs", l)); err != nil || dst != "cpu,cpuacct" {
					t.Errorf("link %s -> %q %v", l, dst, err)
				}
			}
		})
	}
}

func TestDetectV2Delegation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	const uid = 4242
	for _, tc := range []struct {
		name        string
		controllers string
		chown       bool
		wantMode    Mode
		wantErr     string
	}{
		{"delegated", "cpuset cpu io memory pids", true, V2Delegated, ""},
		{"no memory", "cpu pids", true, None, "controllers memory are not delegated"},
		{"root's cgroup", "cpu memory pids", false, None, "not writable by uid 4242"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, l := fakeHost(t, "30 23 0:26 / CG rw - cgroup2 cgroup2 rw\n", "0::/system.slice/u7s.service\n")
			dir := l.V2.Dir
			write(t, dir+"/cgroup.controllers", tc.controllers+"\n")
			write(t, dir+"/cgroup.procs", "")
			write(t, dir+"/cgroup.subtree_control", "")
			if tc.chown {
				for _, p := range []string{dir, dir + "/cgroup.procs", dir + "/cgroup.subtree_control"} {
					os.Chown(p, uid, uid)
				}
			}
			mode, err := DetectV2Delegation(l, uid)
			if mode != tc.wantMode || (tc.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("got %s, %v; want %s, %q", mode, err, tc.wantMode, tc.wantErr)
			}
		})
	}
	_, l := fakeHost(t, hybridMountinfo, hybridCgroup)
	if mode, err := DetectV2Delegation(l, uid); mode != None || err == nil {
		t.Errorf("hybrid: %s %v", mode, err)
	}
}
