package etcdbackup

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startEtcd runs a real etcd member in dir, plain HTTP on loopback, and returns a client.
func startEtcd(t *testing.T, dir string) (func(), *clientv3.Client) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
	cu, _ := url.Parse("http://127.0.0.1:0")
	pu, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(e.Close) }
	t.Cleanup(stop)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd did not start")
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Clients[0].Addr().String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return stop, c
}

// A snapshot etcd streamed checks out; truncated, flipped or foreign files do not; a restore
// makes a new one-member cluster with what existed at the snapshot and not what came after.
func TestSnapshotCheckAndRestore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	stop, c := startEtcd(t, filepath.Join(dir, "etcd"))
	if _, err := c.Put(ctx, "/registry/before", "1"); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "s.db")
	if _, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), clientv3.Config{Endpoints: c.Endpoints()}, snap); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/registry/after", "2"); err != nil {
		t.Fatal(err)
	}
	info, err := Check(snap)
	if err != nil {
		t.Fatalf("Check of a real snapshot: %v", err)
	}
	if info.Keys == 0 || info.Revision == 0 {
		t.Errorf("Check: %+v, want keys and a revision", info)
	}

	b, _ := os.ReadFile(snap)
	flipped := append([]byte(nil), b...)
	flipped[len(flipped)/2] ^= 0xff
	for name, data := range map[string][]byte{
		"flipped":   flipped,
		"truncated": b[:len(b)-100],
		"foreign":   []byte(strings.Repeat("not a snapshot\n", 200)),
		"rawdb":     b[:len(b)-32], // a member's db file, without etcd's digest
	} {
		f := filepath.Join(dir, name+".db")
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Check(f); err == nil {
			t.Errorf("Check accepts a %s file", name)
		}
	}
	stop()

	restored := filepath.Join(dir, "restored")
	m := Member{Name: "n1", PeerURL: "http://127.0.0.1:2390"}
	if err := Restore(snap, restored, m); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if err := Restore(snap, restored, m); err == nil {
		t.Errorf("Restore over an existing data directory")
	}
	_, c2 := startEtcd(t, restored)
	get := func(k string) int {
		r, err := c2.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Kvs)
	}
	if get("/registry/before") != 1 || get("/registry/after") != 0 {
		t.Errorf("after restore: before=%d after=%d, want 1 and 0", get("/registry/before"), get("/registry/after"))
	}
	ms, err := c2.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms.Members) != 1 {
		t.Errorf("restored cluster has %d members, want 1", len(ms.Members))
	}
	if r, _ := c2.Get(ctx, "/registry/before"); r != nil && r.Header.Revision < 1_000_000_000 {
		t.Errorf("revision %d after restore: not bumped past the old one", r.Header.Revision)
	}
}

func TestPruneKeepsNewestScheduled(t *testing.T) {
	dir := t.TempDir()
	if _, err := Prune(dir, 3); err != nil {
		t.Fatal(err)
	}
	if n := ScheduledName(time.Date(2026, 12, 1, 3, 4, 5, 0, time.UTC)); n != "scheduled-20261201T030405Z.db" {
		t.Errorf("ScheduledName = %s", n)
	}
}
