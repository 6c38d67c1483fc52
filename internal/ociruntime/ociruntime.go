// Package ociruntime is the OCI runtime cri-o calls: u7s under the name u7s-runc, which
// execs the pinned runc after one adjustment. cri-o and the kubelet give critical pods an
// oom_score_adj as low as -998; nobody inside a user namespace may lower it below what the
// node started with, and runc treats that refusal as fatal. Where root could start the node at
// -999 (any normal host) nothing changes; where it could not (a host whose root lacks
// CAP_SYS_RESOURCE), the value is raised to the lowest one the node may set.
//
// The same goes for hugetlb limits: the kubelet always sets them (to 0 for unused page sizes),
// cri-o passes them on when the kernel has the controller, and runc fails when the namespace
// has no hugetlb hierarchy to write them to, as on a cgroup v1 hybrid host whose hugetlb
// controller lives on the unified hierarchy. Without the controller no pod can be limited
// (nor given) huge pages, so the limits are dropped.
package ociruntime

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/paths"
)

// Name is the argv[0] under which u7s acts as the runtime.
const Name = "u7s-runc"

// Main clamps the spec of `create`/`run` (the bundle's config.json) and of `exec --process`
// (a process.json), then execs runc with the unchanged arguments.
func Main(args []string) error {
	floor, err := currentOOMScoreAdj()
	if err == nil {
		if file := specFile(args[1:]); file != "" {
			if err := adjustFile(file, Limits{OOMScoreAdjFloor: floor, Hugetlb: hugetlbMounted()}); err != nil {
				return fmt.Errorf("%s: %w", Name, err)
			}
		}
	}
	runc := filepath.Join(paths.NodeBin, "runc")
	return unix.Exec(runc, append([]string{runc}, args[1:]...), os.Environ())
}

// specFile finds the JSON that carries oomScoreAdj for this runc invocation, or "".
func specFile(args []string) string {
	cmd, bundle, process := "", ".", ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		val := func() string {
			if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "-") {
				return v
			}
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch {
		case a == "--bundle" || a == "-b" || strings.HasPrefix(a, "--bundle="):
			bundle = val()
		case a == "--process" || a == "-p" || strings.HasPrefix(a, "--process="):
			process = val()
		case cmd == "" && !strings.HasPrefix(a, "-"):
			cmd = a
		case cmd == "" && (a == "--root" || a == "--log" || a == "--log-format" || a == "--criu"):
			i++ // global options with a value, before the command
		}
	}
	switch cmd {
	case "create", "run":
		return filepath.Join(bundle, "config.json")
	case "exec":
		return process
	}
	return ""
}

// Limits are what the namespace can apply.
type Limits struct {
	OOMScoreAdjFloor int
	Hugetlb          bool
}

// adjustFile rewrites a runtime spec or process JSON in place if Adjust changes it.
func adjustFile(path string, l Limits) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, changed, err := Adjust(b, l)
	if err != nil || !changed {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, out, fi.Mode().Perm())
}

// Adjust returns the JSON with oomScoreAdj (at the top, as in process.json, or under "process",
// as in config.json) raised to the floor, and without hugetlb limits where the namespace has no
// hugetlb cgroup. Everything else is kept as it was, numbers included.
func Adjust(spec []byte, l Limits) ([]byte, bool, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(spec))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, false, err
	}
	changed := false
	target := doc
	if p, ok := doc["process"].(map[string]any); ok {
		target = p
	}
	if n, ok := target["oomScoreAdj"].(json.Number); ok {
		if v, err := n.Int64(); err == nil && v < int64(l.OOMScoreAdjFloor) {
			target["oomScoreAdj"] = json.Number(strconv.Itoa(l.OOMScoreAdjFloor))
			changed = true
		}
	}
	if !l.Hugetlb {
		if linux, ok := doc["linux"].(map[string]any); ok {
			if res, ok := linux["resources"].(map[string]any); ok {
				if _, ok := res["hugepageLimits"]; ok {
					delete(res, "hugepageLimits")
					changed = true
				}
			}
		}
	}
	if !changed {
		return spec, false, nil
	}
	out, err := json.Marshal(doc)
	return out, true, err
}

// hugetlbMounted reports whether this namespace has a cgroup hierarchy with hugetlb: a v1
// hugetlb mount, or cgroup2 at /sys/fs/cgroup.
func hugetlbMounted() bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return true // unknown: leave the spec alone
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, pf := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(pf) < 3 {
			continue
		}
		switch {
		case pf[0] == "cgroup2" && f[4] == "/sys/fs/cgroup":
			return true
		case pf[0] == "cgroup" && strings.Contains(","+pf[2]+",", ",hugetlb,"):
			return true
		}
	}
	return false
}

func currentOOMScoreAdj() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
