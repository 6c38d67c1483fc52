// Package cgroups finds out how the node can use cgroups and prepares it: cgroup v2 with a
// delegated subtree (systemd Delegate=yes), cgroup v1 with subtrees root delegates to the
// node's user (mode B), or none at all (pods run without limits).
package cgroups

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Mode is how the node uses cgroups.
type Mode string

const (
	// V2Delegated: cgroup v2 and the node's cgroup is delegated to its user.
	V2Delegated Mode = "v2-delegated"
	// V1Delegated: cgroup v1 (or hybrid), subtrees delegated to the node's user by root.
	V1Delegated Mode = "v1-delegated"
	// None: no delegation; kubelet runs without per-QoS cgroups.
	None Mode = "none"
)

// Description says what the mode means for the cluster's users (its driver's).
func (m Mode) Description() string {
	d, err := For(m)
	if err != nil {
		return "unknown cgroup mode " + string(m)
	}
	return d.Description()
}

// Hierarchy is one mounted cgroup hierarchy and where this process is in it.
type Hierarchy struct {
	// Controllers as /proc/self/cgroup names them ("cpu", "cpuacct", "name=systemd");
	// empty for cgroup v2.
	Controllers []string
	// Mountpoint is where the hierarchy is mounted, Root the part of it the mount shows.
	Mountpoint, Root string
	ReadOnly         bool
	// Cgroup is this process's cgroup in the hierarchy, Dir its directory ("" when the
	// mount does not show it).
	Cgroup, Dir string
}

// Has reports whether the hierarchy carries controller c.
func (h Hierarchy) Has(c string) bool { return slices.Contains(h.Controllers, c) }

// Layout is the cgroup setup of the host as this process sees it.
type Layout struct {
	// Unified: /sys/fs/cgroup is cgroup2, there are no v1 hierarchies.
	Unified bool
	// V1 are the mounted v1 hierarchies (on a hybrid host, beside V2).
	V1 []Hierarchy
	// V2 is the cgroup2 mount: /sys/fs/cgroup when Unified, /sys/fs/cgroup/unified on a
	// hybrid host (which u7s treats as v1); nil when there is none.
	V2 *Hierarchy
}

// IsV1 reports whether the node must use the v1 hierarchies (v1 or hybrid).
func (l Layout) IsV1() bool { return !l.Unified && len(l.V1) > 0 }

// String summarizes the layout for logs.
func (l Layout) String() string {
	switch {
	case l.Unified:
		return "cgroup v2 (unified), this process in " + l.V2.Cgroup
	case len(l.V1) == 0:
		return "no cgroup hierarchies mounted"
	}
	var hs []string
	for _, h := range l.V1 {
		hs = append(hs, strings.Join(h.Controllers, ",")+":"+h.Cgroup)
	}
	kind := "cgroup v1"
	if l.V2 != nil {
		kind = "cgroup v1 (hybrid, the cgroup2 mount is left out)"
	}
	return kind + ", this process in " + strings.Join(hs, " ")
}

// CgroupRoot is where the host mounts its cgroups.
const CgroupRoot = "/sys/fs/cgroup"

// Detect reads /proc/self/mountinfo and /proc/self/cgroup.
func Detect() (Layout, error) { return detect("/proc/self/mountinfo", "/proc/self/cgroup", CgroupRoot) }

type mountEntry struct {
	root, mountpoint, fstype string
	readOnly                 bool
	superOpts                []string
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func parseMountinfo(data string) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(strings.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if len(f) == 0 {
			continue
		}
		if sep < 6 || len(f) < sep+4 {
			return nil, fmt.Errorf("malformed mountinfo line %q", sc.Text())
		}
		opts := strings.Split(f[5], ",")
		super := strings.Split(f[sep+3], ",")
		out = append(out, mountEntry{
			root:       unescape(f[3]),
			mountpoint: unescape(f[4]),
			fstype:     f[sep+1],
			readOnly:   slices.Contains(opts, "ro") || slices.Contains(super, "ro"),
			superOpts:  super,
		})
	}
	return out, sc.Err()
}

// visible drops mounts hidden by a later mount on the same point or on an ancestor.
func visible(ms []mountEntry) []mountEntry {
	var out []mountEntry
	for i, m := range ms {
		hidden := false
		for _, later := range ms[i+1:] {
			if later.mountpoint == m.mountpoint || strings.HasPrefix(m.mountpoint, strings.TrimSuffix(later.mountpoint, "/")+"/") {
				hidden = true
				break
			}
		}
		if !hidden {
			out = append(out, m)
		}
	}
	return out
}

// procCgroup is one line of /proc/self/cgroup.
type procCgroup struct {
	controllers []string // nil for the v2 line "0::/path"
	path        string
}

func parseProcCgroup(data string) []procCgroup {
	var out []procCgroup
	for _, line := range strings.Split(data, "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		var cs []string
		if f[1] != "" {
			cs = strings.Split(f[1], ",")
		}
		out = append(out, procCgroup{cs, f[2]})
	}
	return out
}

// dirOf is where cgroup is under a mount of root at mountpoint; "" if the mount does not
// show it (a cgroup namespace shows cgroups outside it as "/../x").
func dirOf(mountpoint, root, cgroup string) string {
	switch {
	case strings.Contains(cgroup+"/", "/../"):
		return ""
	case root == "/":
		return filepath.Join(mountpoint, cgroup)
	case cgroup == root:
		return mountpoint
	}
	if rel, ok := strings.CutPrefix(cgroup, root+"/"); ok {
		return filepath.Join(mountpoint, rel)
	}
	return ""
}

func detect(mountinfoFile, cgroupFile, cgroupRoot string) (Layout, error) {
	mi, err := os.ReadFile(mountinfoFile)
	if err != nil {
		return Layout{}, fmt.Errorf("detect cgroups: %w", err)
	}
	cg, err := os.ReadFile(cgroupFile)
	if err != nil {
		return Layout{}, fmt.Errorf("detect cgroups: %w", err)
	}
	mounts, err := parseMountinfo(string(mi))
	if err != nil {
		return Layout{}, fmt.Errorf("detect cgroups: %s: %w", mountinfoFile, err)
	}
	mounts = visible(mounts)
	var l Layout
	for _, pc := range parseProcCgroup(string(cg)) {
		var found *mountEntry
		for i, m := range mounts {
			var match bool
			if pc.controllers == nil {
				match = m.fstype == "cgroup2"
			} else {
				match = m.fstype == "cgroup" && !slices.ContainsFunc(pc.controllers, func(c string) bool { return !slices.Contains(m.superOpts, c) })
			}
			// The same hierarchy may be mounted twice; the one under /sys/fs/cgroup wins.
			if match && (found == nil || !strings.HasPrefix(found.mountpoint, cgroupRoot) && strings.HasPrefix(m.mountpoint, cgroupRoot)) {
				found = &mounts[i]
			}
		}
		if found == nil {
			continue // not mounted
		}
		h := Hierarchy{
			Controllers: pc.controllers,
			Mountpoint:  found.mountpoint,
			Root:        found.root,
			ReadOnly:    found.readOnly,
			Cgroup:      pc.path,
			Dir:         dirOf(found.mountpoint, found.root, pc.path),
		}
		if pc.controllers == nil {
			l.V2 = &h
			l.Unified = filepath.Clean(found.mountpoint) == cgroupRoot
		} else {
			l.V1 = append(l.V1, h)
		}
	}
	if l.Unified {
		l.V1 = nil // v1 named hierarchies beside a unified /sys/fs/cgroup play no part
	}
	return l, nil
}
