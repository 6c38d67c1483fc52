package host

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/internal/paths"
)

// Sizes of the subordinate id range of paths.User. The namespace maps the user itself to
// root and the range to ids 1..Count: MinSubIDs (65536) is what images expect (ids up to
// 65534 "nobody"); DefaultSubIDs (262144, four such blocks) leaves room for images with
// larger ids and a few pods with hostUsers: false, which take 65536 ids each (a full node of
// such pods would need 110*65536). Ranges start on a multiple of 65536, as kubelet's user
// namespace support wants.
const (
	MinSubIDs     = 65536
	DefaultSubIDs = 262144

	subIDMin   = 100000 // login.defs SUB_UID_MIN
	subIDMax   = 1<<32 - 2
	subIDAlign = 65536
)

// IDRange is a block of subordinate ids: Start .. Start+Count-1.
type IDRange struct {
	Start int `json:"start"`
	Count int `json:"count"`
}

// End is the last id of the range.
func (r IDRange) End() int { return r.Start + r.Count - 1 }

// String is the range as usermod takes it ("first-last").
func (r IDRange) String() string { return fmt.Sprintf("%d-%d", r.Start, r.End()) }

func (r IDRange) overlaps(o IDRange) bool { return r.Start <= o.End() && o.Start <= r.End() }

// User is the system user that owns the node.
type User struct {
	Name           string
	UID, GID       int
	Home           string
	SubUID, SubGID IDRange
}

// EnsureUser creates paths.User (a system user with home paths.Home, no login shell and its
// own group) unless it exists, and gives it a subordinate uid and gid range of at least
// MinSubIDs ids (DefaultSubIDs when it adds one) that overlaps no other entry. What it
// creates is recorded in the host state for RemoveUser. It is idempotent.
func EnsureUser() (User, error) { return defaultSystem().ensureUser(paths.User, paths.Home) }

// RemoveUser undoes EnsureUser for u7s reset: it deletes paths.User with its home
// (userdel --remove) if EnsureUser created it, and removes the subordinate id ranges
// EnsureUser added. Killing the user's processes is the caller's job. A missing user is fine.
func RemoveUser() error { return defaultSystem().removeUser(paths.User) }

const (
	subuidFile = "/etc/subuid"
	subgidFile = "/etc/subgid"
)

func (s *system) ensureUser(name, home string) (User, error) {
	u, err := s.lookupUser(name)
	if errors.As(err, new(user.UnknownUserError)) {
		if err := s.createUser(name, home); err != nil {
			return User{}, err
		}
		u, err = s.lookupUser(name)
	}
	if err != nil {
		return User{}, fmt.Errorf("look up user %s: %w", name, err)
	}
	if u.HomeDir != home {
		return User{}, fmt.Errorf("user %s exists with home %s, but u7s keeps the node in %s: "+
			"usermod --move-home --home %s %s, or remove the user", name, u.HomeDir, home, home, name)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return User{}, fmt.Errorf("user %s has a non-numeric uid or gid: %w", name, err)
	}
	if err := s.ensureHome(home, uid, gid); err != nil {
		return User{}, err
	}
	subUID, subGID, err := s.ensureSubIDs(name, uid)
	if err != nil {
		return User{}, err
	}
	return User{Name: name, UID: uid, GID: gid, Home: home, SubUID: subUID, SubGID: subGID}, nil
}

func (s *system) createUser(name, home string) error {
	shell := "/bin/false"
	for _, sh := range []string{"/usr/sbin/nologin", "/sbin/nologin"} {
		if _, err := os.Stat(s.path(sh)); err == nil {
			shell = sh
			break
		}
	}
	args := []string{"--system", "--create-home", "--home-dir", home, "--shell", shell,
		"--comment", "u7s rootless Kubernetes node"}
	// --user-group fails when a group of that name is left over; join it instead.
	if _, err := s.lookupGroup(name); err == nil {
		args = append(args, "--gid", name)
	} else {
		args = append(args, "--user-group")
	}
	if _, err := s.run("useradd", append(args, name)...); err != nil {
		return fmt.Errorf("create user %s: %w", name, err)
	}
	return s.updateState(func(st *State) { st.CreatedUser = true })
}

func (s *system) ensureHome(home string, uid, gid int) error {
	p := s.path(home)
	if fi, err := os.Stat(p); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("home %s of %s is not a directory: remove it", home, paths.User)
		}
		return nil
	}
	if err := os.MkdirAll(p, 0o700); err != nil {
		return fmt.Errorf("create home %s: %w", home, err)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		return fmt.Errorf("create home %s: %w", home, err)
	}
	return nil
}

// subIDEntry is one line of /etc/subuid or /etc/subgid.
type subIDEntry struct {
	owner string // user name or numeric uid
	r     IDRange
}

func parseSubIDs(data string) []subIDEntry {
	var out []subIDEntry
	for _, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 {
			continue
		}
		start, err1 := strconv.Atoi(f[1])
		count, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || count <= 0 {
			continue
		}
		out = append(out, subIDEntry{f[0], IDRange{start, count}})
	}
	return out
}

func (s *system) readSubIDs(file string) ([]subIDEntry, error) {
	data, err := os.ReadFile(s.path(file))
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return parseSubIDs(string(data)), nil
}

// largestOf is the owner's largest range, if any.
func largestOf(entries []subIDEntry, name string, uid int) (IDRange, bool) {
	var best IDRange
	found := false
	for _, e := range entries {
		if (e.owner == name || e.owner == strconv.Itoa(uid)) && e.r.Count > best.Count {
			best, found = e.r, true
		}
	}
	return best, found
}

// allocate finds the lowest range of count ids, aligned to subIDAlign, above subIDMin,
// that overlaps none of used.
func allocate(used []IDRange, count int) (IDRange, error) {
	align := func(n int) int { return (n + subIDAlign - 1) / subIDAlign * subIDAlign }
	r := IDRange{align(subIDMin), count}
	for r.End() <= subIDMax {
		i := slices.IndexFunc(used, r.overlaps)
		if i < 0 {
			return r, nil
		}
		r.Start = align(used[i].End() + 1)
	}
	return IDRange{}, fmt.Errorf("no free range of %d subordinate ids in %s/%s: remove unused entries", count, subuidFile, subgidFile)
}

func (s *system) ensureSubIDs(name string, uid int) (IDRange, IDRange, error) {
	uids, err := s.readSubIDs(subuidFile)
	if err != nil {
		return IDRange{}, IDRange{}, err
	}
	gids, err := s.readSubIDs(subgidFile)
	if err != nil {
		return IDRange{}, IDRange{}, err
	}
	subUID, okU := largestOf(uids, name, uid)
	subGID, okG := largestOf(gids, name, uid)
	needU := !okU || subUID.Count < MinSubIDs
	needG := !okG || subGID.Count < MinSubIDs
	if !needU && !needG {
		return subUID, subGID, nil
	}
	// One range free in both files, so that uids and gids line up.
	var used []IDRange
	for _, e := range slices.Concat(uids, gids) {
		used = append(used, e.r)
	}
	r, err := allocate(used, DefaultSubIDs)
	if err != nil {
		return IDRange{}, IDRange{}, err
	}
	var args []string
	if needU {
		args = append(args, "--add-subuids", r.String())
	}
	if needG {
		args = append(args, "--add-subgids", r.String())
	}
	if out, err := s.run("usermod", append(args, name)...); err != nil {
		// usermod without sub-id support (busybox, old shadow): edit the files ourselves.
		if !strings.Contains(string(out), "unrecognized option") && !strings.Contains(string(out), "invalid option") {
			return IDRange{}, IDRange{}, fmt.Errorf("add subordinate ids %s for %s: %w", r, name, err)
		}
		for _, f := range []struct {
			need bool
			file string
		}{{needU, subuidFile}, {needG, subgidFile}} {
			if !f.need {
				continue
			}
			if err := s.editSubIDs(f.file, nil, subIDEntry{name, r}); err != nil {
				return IDRange{}, IDRange{}, err
			}
		}
	}
	if err := s.updateState(func(st *State) {
		if needU {
			st.AddedSubUIDs = append(st.AddedSubUIDs, r)
		}
		if needG {
			st.AddedSubGIDs = append(st.AddedSubGIDs, r)
		}
	}); err != nil {
		return IDRange{}, IDRange{}, err
	}
	if needU {
		subUID = r
	}
	if needG {
		subGID = r
	}
	return subUID, subGID, nil
}

// editSubIDs rewrites a sub-id file atomically under shadow-utils' lock (<file>.lock):
// lines whose entry drop reports are removed, add is appended, everything else is kept.
func (s *system) editSubIDs(file string, drop func(subIDEntry) bool, add ...subIDEntry) error {
	p := s.path(file)
	unlock, err := lockFile(p + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	data, err := os.ReadFile(p)
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("read %s: %w", file, err)
	}
	var b strings.Builder
	changed := len(add) > 0
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if line == "" {
			continue
		}
		if es := parseSubIDs(line); len(es) == 1 && drop != nil && drop(es[0]) {
			changed = true
			continue
		}
		b.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			b.WriteString("\n")
		}
	}
	if !changed {
		return nil
	}
	for _, e := range add {
		fmt.Fprintf(&b, "%s:%d:%d\n", e.owner, e.r.Start, e.r.Count)
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(p); err == nil {
		mode = fi.Mode().Perm()
	}
	return fsutil.WriteFileAtomic(p, []byte(b.String()), mode)
}

// lockFile takes the lock shadow-utils takes on a file: <file>.lock made exclusively, holding
// our pid. A lock whose pid is gone is stale and taken over.
func lockFile(lock string) (func(), error) {
	for i := 0; ; i++ {
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			fmt.Fprintf(f, "%d", os.Getpid())
			f.Close()
			return func() { os.Remove(lock) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lock %s: %w", lock, err)
		}
		if data, rerr := os.ReadFile(lock); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(data))); perr == nil && pid > 0 &&
				errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
				os.Remove(lock)
				continue
			}
		}
		if i >= 50 {
			return nil, fmt.Errorf("%s is held by another program (useradd, usermod?): retry when it is done, or remove it if stale", lock)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *system) removeUser(name string) error {
	st, err := s.loadState()
	if err != nil {
		return err
	}
	u, lerr := s.lookupUser(name)
	exists := lerr == nil
	if lerr != nil && !errors.As(lerr, new(user.UnknownUserError)) {
		return fmt.Errorf("look up user %s: %w", name, lerr)
	}
	if exists && st.CreatedUser {
		if out, err := s.run("userdel", "--remove", name); err != nil && !strings.Contains(string(out), "does not exist") {
			return fmt.Errorf("remove user %s (are its processes still running?): %w", name, err)
		}
	}
	uid := ""
	if exists {
		uid = u.Uid
	}
	// Lines of a user we created are all ours; of a user we found, only the ranges we added.
	ours := func(added []IDRange) func(subIDEntry) bool {
		return func(e subIDEntry) bool {
			if e.owner != name && (uid == "" || e.owner != uid) {
				return false
			}
			return st.CreatedUser || slices.Contains(added, e.r)
		}
	}
	if err := s.editSubIDs(subuidFile, ours(st.AddedSubUIDs)); err != nil {
		return err
	}
	if err := s.editSubIDs(subgidFile, ours(st.AddedSubGIDs)); err != nil {
		return err
	}
	return s.updateState(func(st *State) {
		st.CreatedUser = false
		st.AddedSubUIDs = nil
		st.AddedSubGIDs = nil
	})
}

// SubUIDRanges are the subordinate uid ranges /etc/subuid gives the user (by name or uid).
func SubUIDRanges(name string, uid int) ([]IDRange, error) {
	entries, err := defaultSystem().readSubIDs("/etc/subuid")
	if err != nil {
		return nil, err
	}
	var out []IDRange
	for _, e := range entries {
		if e.owner == name || e.owner == strconv.Itoa(uid) {
			out = append(out, e.r)
		}
	}
	return out, nil
}

// Contains reports whether id is in the range.
func (r IDRange) Contains(id int) bool { return id >= r.Start && id <= r.End() }

// EnsurePackageUser is EnsureUser for the distribution package's install scripts: the user
// and its subordinate ids then belong to the package, not to an init or join, so u7s reset
// keeps them and a reinstall finds the same uid and range.
func EnsurePackageUser() (User, error) {
	s := defaultSystem()
	before, err := s.loadState()
	if err != nil {
		return User{}, err
	}
	u, err := s.ensureUser(paths.User, paths.Home)
	if err != nil {
		return u, err
	}
	return u, s.updateState(func(st *State) {
		st.CreatedUser = before.CreatedUser
		st.AddedSubUIDs, st.AddedSubGIDs = before.AddedSubUIDs, before.AddedSubGIDs
	})
}
