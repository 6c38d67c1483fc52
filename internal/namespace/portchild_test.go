package namespace

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/rootless-containers/rootlesskit/v3/pkg/port"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin/msg"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin/opaque"
	"golang.org/x/sys/unix"
)

// startPortChild runs d as the namespace's port driver on a socket in a temporary directory,
// as rootlesskit's parent starts it, and returns the socket's path.
func startPortChild(t *testing.T, d *portChild) string {
	t.Helper()
	dir := t.TempDir()
	sock, pipe := filepath.Join(dir, "port.sock"), filepath.Join(dir, "ready")
	if err := unix.Mkfifo(pipe, 0o600); err != nil {
		t.Fatal(err)
	}
	quit := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- d.RunChildDriver(map[string]string{opaque.SocketPath: sock, opaque.ChildReadyPipePath: pipe,
			opaque.SourceIPTransparent: "true"}, quit, "")
	}()
	r, err := os.Open(pipe)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, r) // until the driver closes it: listening
	r.Close()
	t.Cleanup(func() {
		close(quit)
		if err := <-done; err != nil {
			t.Errorf("driver: %v", err)
		}
	})
	return sock
}

// A client from outside the host whose dial from its own address is refused (as a
// NetworkPolicy refuses it) is refused: never dialled again from the namespace's address.
func TestPortChildRefusedClientIsNotRedialled(t *testing.T) {
	var plain atomic.Int32
	d := &portChild{
		checkRouting: func() error { return nil },
		dialFrom: func(target, ip string, p int) (net.Conn, error) {
			if ip != "192.0.2.7" || p != 40000 || target != "10.0.2.100:30080" {
				t.Errorf("dialled %s from %s:%d", target, ip, p)
			}
			return nil, unix.ECONNREFUSED
		},
		dial: func(network, target string) (net.Conn, error) {
			plain.Add(1)
			return net.Dial(network, target)
		},
	}
	sock := startPortChild(t, d)
	spec := port.Spec{Proto: "tcp", ChildIP: "10.0.2.100", ChildPort: 30080}
	fd, err := msg.ConnectToChildWithSocketPath(sock, spec, &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000})
	if err == nil {
		unix.Close(fd)
		t.Fatal("a refused client's connection was handed to the parent")
	}
	if n := plain.Load(); n != 0 {
		t.Errorf("dialled %d time(s) from the namespace's own address after the refusal", n)
	}
}

// The routing for clients' addresses is not set up: the connection fails, it is not
// forwarded from the namespace's address.
func TestPortChildNoRoutingRefuses(t *testing.T) {
	d := &portChild{
		checkRouting: func() error { return errors.New("no mangle table") },
		dialFrom: func(string, string, int) (net.Conn, error) {
			t.Error("dialled without routing")
			return nil, unix.EINVAL
		},
		dial: func(string, string) (net.Conn, error) { t.Error("dialled from the namespace"); return nil, unix.EINVAL },
	}
	sock := startPortChild(t, d)
	spec := port.Spec{Proto: "tcp", ChildIP: "10.0.2.100", ChildPort: 30080}
	if fd, err := msg.ConnectToChildWithSocketPath(sock, spec, &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}); err == nil {
		unix.Close(fd)
		t.Fatal("forwarded without the client's address")
	}
}

// A client on the host's loopback is dialled from the namespace (it is the node's own), and the
// parent gets a working socket.
func TestPortChildLoopbackClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	d := newPortChild()
	d.dialFrom = func(string, string, int) (net.Conn, error) {
		t.Error("a loopback client dialled from its address")
		return nil, unix.EINVAL
	}
	sock := startPortChild(t, d)
	p := ln.Addr().(*net.TCPAddr).Port
	fd, err := msg.ConnectToChildWithSocketPath(sock, port.Spec{Proto: "tcp4", ChildIP: "127.0.0.1", ChildPort: p},
		&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5555})
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "conn")
	if _, err := f.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if s := <-got; s != "hello" {
		t.Errorf("the listener got %q through the handed socket", s)
	}
}

// A client from outside to a port of the namespace's loopback (the API server's) is dialled from
// the namespace: the kernel would not route the answers to the client's address.
func TestPortChildLoopbackTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	d := newPortChild()
	d.checkRouting = func() error { t.Error("routing set up for a loopback target"); return nil }
	d.dialFrom = func(string, string, int) (net.Conn, error) {
		t.Error("dialled from the client's address")
		return nil, unix.EINVAL
	}
	sock := startPortChild(t, d)
	p := ln.Addr().(*net.TCPAddr).Port
	fd, err := msg.ConnectToChildWithSocketPath(sock, port.Spec{Proto: "tcp", ParentIP: "0.0.0.0", ChildPort: p},
		&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000})
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
}

func TestDialIP(t *testing.T) {
	for _, c := range []struct {
		req  msg.Request
		want string
	}{
		{msg.Request{IP: "10.0.2.100"}, "10.0.2.100"},
		{msg.Request{ParentIP: "192.168.1.5", HostGatewayIP: "10.0.2.2"}, "192.168.1.5"},
		{msg.Request{ParentIP: "10.0.2.2", HostGatewayIP: "10.0.2.2"}, "127.0.0.1"},
		{msg.Request{ParentIP: "0.0.0.0"}, "127.0.0.1"},
		{msg.Request{}, "127.0.0.1"},
	} {
		if got, err := dialIP(&c.req); err != nil || got != c.want {
			t.Errorf("dialIP(%+v) = %q, %v; want %q", c.req, got, err, c.want)
		}
	}
	if _, err := dialIP(&msg.Request{IP: "nonsense"}); err == nil {
		t.Error("dialIP accepted an invalid address")
	}
	for proto, want := range map[string]bool{"tcp": true, "udp": false} {
		req := msg.Request{SourceIP: "192.0.2.7", SourcePort: 1}
		if got := fromOutside(proto, &req); got != want {
			t.Errorf("fromOutside(%s) = %v", proto, got)
		}
	}
	if fromOutside("tcp", &msg.Request{SourceIP: "127.0.0.1", SourcePort: 1}) {
		t.Error("a loopback client counted as outside")
	}
}

// Routing not there yet (the namespace is starting) refuses the connection, and is looked for
// again at the next one rather than refused for good.
func TestPortChildRoutingLookedForAgain(t *testing.T) {
	var ready atomic.Bool
	var dialled atomic.Int32
	d := &portChild{
		checkRouting: func() error {
			if !ready.Load() {
				return errors.New("not set up yet")
			}
			return nil
		},
		dialFrom: func(string, string, int) (net.Conn, error) { dialled.Add(1); return nil, unix.ECONNREFUSED },
		dial:     func(string, string) (net.Conn, error) { t.Error("dialled from the namespace"); return nil, unix.EINVAL },
	}
	sock := startPortChild(t, d)
	spec := port.Spec{Proto: "tcp", ChildIP: "10.0.2.100", ChildPort: 30080}
	client := &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}
	if _, err := msg.ConnectToChildWithSocketPath(sock, spec, client); err == nil || dialled.Load() != 0 {
		t.Fatalf("without routing: err %v, %d dials", err, dialled.Load())
	}
	ready.Store(true)
	_, _ = msg.ConnectToChildWithSocketPath(sock, spec, client)
	if n := dialled.Load(); n != 1 {
		t.Errorf("routing set up later: %d dials from the client's address, want 1", n)
	}
}
