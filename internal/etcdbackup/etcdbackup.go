// Package etcdbackup saves, lists and restores snapshots of a control plane's stacked etcd
// member, from the host as root (etcd's own client and restore, linked): the snapshot is what
// etcd streams, checked (its appended SHA-256 and its database) before it is kept, and a
// restore checks the file the same way before it changes anything.
package etcdbackup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	kubeadmconstants "k8s.io/kubernetes/cmd/kubeadm/app/constants"

	"github.com/u7s/u7s/internal/paths"
)

// Dir holds the scheduled snapshots: root's only (a snapshot holds every Secret, sealed, and
// everything else in the clear).
const Dir = paths.EtcdBackupDir

// Info describes a snapshot file.
type Info struct {
	Path     string
	Size     int64
	Time     time.Time
	Revision int64
	Keys     int
}

// Endpoint is how the host reaches this control plane's member: its address, forwarded into
// the namespace, with the API server's etcd client certificate.
type Endpoint struct {
	Address string // host:port, e.g. 192.0.2.2:2379
	PKIDir  string // /etc/kubernetes/pki
}

// MemberAt is the endpoint of the member of the control plane at the host address advertise.
func MemberAt(advertise string) Endpoint {
	return Endpoint{Address: net.JoinHostPort(advertise, strconv.Itoa(kubeadmconstants.EtcdListenClientPort)), PKIDir: paths.PKIDir}
}

func (e Endpoint) config() (clientv3.Config, error) {
	tls, err := transport.TLSInfo{
		CertFile:      filepath.Join(e.PKIDir, "apiserver-etcd-client.crt"),
		KeyFile:       filepath.Join(e.PKIDir, "apiserver-etcd-client.key"),
		TrustedCAFile: filepath.Join(e.PKIDir, "etcd", "ca.crt"),
	}.ClientConfig()
	if err != nil {
		return clientv3.Config{}, fmt.Errorf("etcd client certificates in %s (only a control plane has them): %w", e.PKIDir, err)
	}
	return clientv3.Config{Endpoints: []string{"https://" + e.Address}, TLS: tls, DialTimeout: 10 * time.Second}, nil
}

// Save streams a snapshot of the member to file (0600), checked before it is renamed into
// place: a file that exists is never half-written.
func Save(ctx context.Context, e Endpoint, file string) (Info, error) {
	cfg, err := e.config()
	if err != nil {
		return Info{}, err
	}
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(file)+".tmp")
	defer os.Remove(tmp)
	if _, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), cfg, tmp); err != nil {
		return Info{}, fmt.Errorf("etcd snapshot from %s: %w", e.Address, err)
	}
	info, err := Check(tmp)
	if err != nil {
		return Info{}, fmt.Errorf("the snapshot etcd sent does not check out: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return Info{}, err
	}
	if err := os.Rename(tmp, file); err != nil {
		return Info{}, err
	}
	info.Path = file
	return info, nil
}

// Check verifies a snapshot file: its trailing SHA-256 of everything before it (etcd appends
// one to every snapshot it streams), then its database, read as etcd's restore would. A
// corrupt, truncated or foreign file is an error that says which.
func Check(file string) (Info, error) {
	f, err := os.Open(file)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Info{}, err
	}
	// etcd's own test: a database is a whole number of 512-byte pages, plus the digest.
	if st.Size() < 512+sha256.Size || st.Size()%512 != sha256.Size {
		return Info{}, fmt.Errorf("%s is not an etcd snapshot (%d bytes: not a database with its checksum; a copy of a member's db file is not a snapshot)", file, st.Size())
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, st.Size()-sha256.Size); err != nil {
		return Info{}, err
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return Info{}, err
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return Info{}, fmt.Errorf("%s is corrupt: its SHA-256 does not match the one etcd appended", file)
	}
	s, err := etcdutl.NewV3(zap.NewNop()).Status(file)
	if err != nil {
		return Info{}, fmt.Errorf("%s: not a readable etcd database: %w", file, err)
	}
	if s.TotalKey == 0 {
		return Info{}, fmt.Errorf("%s holds no keys: not a snapshot of a cluster", file)
	}
	return Info{Path: file, Size: st.Size(), Time: st.ModTime(), Revision: s.Revision, Keys: s.TotalKey}, nil
}

// List is the snapshots in dir, newest first (files that do not check out are listed with
// the error).
func List(dir string) ([]Info, []error, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var infos []Info
	var bad []error
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".db") {
			continue
		}
		i, err := Check(filepath.Join(dir, e.Name()))
		if err != nil {
			bad = append(bad, err)
			continue
		}
		infos = append(infos, i)
	}
	sort.Slice(infos, func(a, b int) bool { return infos[a].Time.After(infos[b].Time) })
	return infos, bad, nil
}

// Prune keeps the newest keep scheduled snapshots in dir and removes the others.
func Prune(dir string, keep int) ([]string, error) {
	infos, _, err := List(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for i, in := range infos {
		if i < keep || !strings.HasPrefix(filepath.Base(in.Path), ScheduledPrefix) {
			continue
		}
		if err := os.Remove(in.Path); err != nil {
			return removed, err
		}
		removed = append(removed, in.Path)
	}
	return removed, nil
}

// ScheduledPrefix names the snapshots the timer takes (only those are pruned).
const ScheduledPrefix = "scheduled-"

// ScheduledName is the file of a scheduled snapshot taken at t.
func ScheduledName(t time.Time) string {
	return ScheduledPrefix + t.UTC().Format("20060102T150405Z") + ".db"
}

// Member is the identity a restore gives the data directory: a new cluster of this one member.
type Member struct {
	Name    string // the node name (etcd's member name, as kubeadm set it)
	PeerURL string // https://ADDRESS:2380
}

// Restore makes a new data directory at dataDir from the checked snapshot file, as a new
// cluster whose only member is m; the revision is bumped and compacted, so that watchers
// (every controller) relist instead of missing the changes between. dataDir must not exist.
func Restore(file string, dataDir string, m Member) error {
	if _, err := os.Stat(dataDir); err == nil {
		return fmt.Errorf("%s exists: a restore writes a new data directory", dataDir)
	}
	return etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        file,
		Name:                m.Name,
		OutputDataDir:       dataDir,
		PeerURLs:            []string{m.PeerURL},
		InitialCluster:      m.Name + "=" + m.PeerURL,
		InitialClusterToken: "u7s-restore-" + time.Now().UTC().Format("20060102T150405Z"),
		// etcd's advice for Kubernetes: far beyond any revision since the snapshot.
		RevisionBump:  1_000_000_000,
		MarkCompacted: true,
	})
}

// DataDir is the member's data directory on the host.
func DataDir() string { return paths.OnHost("/var/lib/etcd") }
