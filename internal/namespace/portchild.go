package namespace

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rootless-containers/rootlesskit/v3/pkg/lowlevelmsgutil"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin/msg"
	"github.com/rootless-containers/rootlesskit/v3/pkg/port/builtin/opaque"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// portChild is the namespace's half of rootlesskit's builtin port driver (the parent half is
// rootlesskit's own): for each connection the parent accepts on a published host port, it dials
// the port inside the namespace and hands the socket back over the driver's unix socket.
//
// It differs from rootlesskit's child (pkg/port/builtin/child) in one thing, which is why u7s
// has its own: a TCP client from outside the host is dialled from the client's own address
// (IP_TRANSPARENT), and when that dial fails the connection fails. rootlesskit then dials again
// from the namespace's own address, and a pod refused to a client by a NetworkPolicy (an ipBlock
// that does not admit it) would be reached anyway: every policy engine admits the node's own
// addresses, as the kubelet's probes come from them.
//
// A port forwarded to the namespace's loopback (the node's own: the API server, etcd, the
// kubelet) is dialled from the namespace, as the kernel does not route an answer from loopback
// to a client's address: such a dial from the client's address only times out (rootlesskit's
// waits a second each time, then dials again from the namespace). No NetworkPolicy covers the
// node's own processes.
type portChild struct {
	// refusals counts the connections refused since the last one logged: one line a
	// refusalLogInterval at most, as a policy may refuse many.
	mu         sync.Mutex
	routingOK  bool
	refusals   int
	lastLogged time.Time
	// The namespace's side effects, replaced in unit tests.
	checkRouting func() error
	dialFrom     func(target, sourceIP string, sourcePort int) (net.Conn, error)
	dial         func(network, target string) (net.Conn, error)
}

func newPortChild() *portChild {
	return &portChild{checkRouting: checkSourceRouting, dialFrom: dialFrom, dial: net.Dial}
}

// ClientAddressMark marks the namespace's connections dialled from a client's address, so that
// the answers to them are delivered locally (by table ClientAddressTable) instead of being
// routed out to the client through slirp4netns. namespace-init sets that routing up
// (internal/nsinit); the port driver only looks for it.
const (
	ClientAddressMark  uint32 = 0x2000000
	ClientAddressTable        = 198
	// transparentDialTimeout bounds a dial that a policy drops in silence (the client, already
	// accepted on the host, would wait for the kernel's retries), and is long enough for a pod on
	// another, slow host (an emulated VM answers in well under a second).
	transparentDialTimeout = 10 * time.Second
)

func (d *portChild) RunChildDriver(opq map[string]string, quit <-chan struct{}, detachedNetNSPath string) error {
	if detachedNetNSPath != "" {
		return errors.New("port driver: a detached network namespace is not supported")
	}
	socketPath, readyPipe := opq[opaque.SocketPath], opq[opaque.ChildReadyPipePath]
	if socketPath == "" || readyPipe == "" {
		return fmt.Errorf("port driver: the parent gave no socket or ready pipe (%v)", opq)
	}
	transparent := opq[opaque.SourceIPTransparent] == "true"
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: socketPath, Net: "unix"})
	if err != nil {
		return fmt.Errorf("port driver: %w", err)
	}
	// The parent waits until the pipe is closed: the socket is listening.
	w, err := os.OpenFile(readyPipe, os.O_WRONLY, os.ModeNamedPipe)
	if err != nil {
		ln.Close()
		return fmt.Errorf("port driver: %w", err)
	}
	if err := w.Close(); err != nil {
		ln.Close()
		return fmt.Errorf("port driver: %w", err)
	}
	stopped := make(chan struct{})
	go func() {
		<-quit
		close(stopped)
		ln.Close()
	}()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			select {
			case <-stopped:
				return nil
			default:
				return fmt.Errorf("port driver: %w", err)
			}
		}
		go d.serve(c, transparent)
	}
}

// serve answers one request of the parent: an init, or a connect answered with the dialled
// socket's descriptor, or with the error.
func (d *portChild) serve(c *net.UnixConn, transparent bool) {
	defer c.Close()
	var req msg.Request
	if _, err := lowlevelmsgutil.UnmarshalFromReader(c, &req); err != nil {
		return
	}
	var err error
	switch req.Type {
	case msg.RequestTypeInit:
		_, err = lowlevelmsgutil.MarshalToWriter(c, nil)
	case msg.RequestTypeConnect:
		err = d.connect(c, &req, transparent)
	default:
		err = fmt.Errorf("unknown request type %q", req.Type)
	}
	if err != nil {
		d.logRefusal(&req, err)
		_, _ = lowlevelmsgutil.MarshalToWriter(c, &msg.Reply{Error: err.Error()})
	}
}

// refusalLogInterval is how often at most a refused connection is logged.
const refusalLogInterval = 10 * time.Second

// logRefusal logs why a forwarded connection was refused (the parent only logs that it was),
// one line a refusalLogInterval at most, with how many were refused since the last line.
func (d *portChild) logRefusal(req *msg.Request, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refusals++
	if time.Since(d.lastLogged) < refusalLogInterval {
		return
	}
	fmt.Fprintf(os.Stderr, "port forward: %d connection(s) refused, the last from %s:%d to %s port %d: %v\n",
		d.refusals, req.SourceIP, req.SourcePort, req.Proto, req.Port, err)
	d.refusals, d.lastLogged = 0, time.Now()
}

func (d *portChild) connect(c *net.UnixConn, req *msg.Request, transparent bool) error {
	network, err := dialNetwork(req.Proto)
	if err != nil {
		return err
	}
	ip, err := dialIP(req)
	if err != nil {
		return err
	}
	target := net.JoinHostPort(ip, strconv.Itoa(req.Port))
	var conn net.Conn
	if transparent && fromOutside(network, req) && !net.ParseIP(ip).IsLoopback() {
		if err := d.routed(); err != nil {
			return err
		}
		// No second try from the namespace's own address: see portChild.
		conn, err = d.dialFrom(target, req.SourceIP, req.SourcePort)
	} else {
		conn, err = d.dial(network, target)
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	raw, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	var sendErr error
	if err := raw.Control(func(fd uintptr) {
		_, _, sendErr = c.WriteMsgUnix([]byte("fd"), unix.UnixRights(int(fd)), nil)
	}); err != nil {
		return err
	}
	return sendErr
}

// dialNetwork is the network to dial for the parent's protocol: tcp4 and tcp6 alike are
// dialled as tcp, to the address that says which.
func dialNetwork(proto string) (string, error) {
	switch proto {
	case "tcp", "tcp4", "tcp6":
		return "tcp", nil
	case "udp", "udp4", "udp6":
		return "udp", nil
	}
	return "", fmt.Errorf("unknown protocol %q", proto)
}

// dialIP is the address inside the namespace to dial, as rootlesskit's child picks it: the
// published port's child address, else the parent's address when it is a specific one (not the
// host's gateway address nor 0.0.0.0), else loopback.
func dialIP(req *msg.Request) (string, error) {
	if req.IP != "" {
		ip := net.ParseIP(req.IP)
		if ip == nil {
			return "", fmt.Errorf("invalid IP %q", req.IP)
		}
		return ip.String(), nil
	}
	if req.ParentIP != "" && req.ParentIP != req.HostGatewayIP && req.ParentIP != "0.0.0.0" {
		return req.ParentIP, nil
	}
	return "127.0.0.1", nil
}

// fromOutside reports whether the connection is dialled from the client's address: TCP from a
// client that is not the host's loopback. UDP keeps no client address (an answer to a
// non-local address would leave through slirp4netns, rootlesskit#592).
func fromOutside(network string, req *msg.Request) bool {
	if network != "tcp" || req.SourceIP == "" || req.SourcePort == 0 {
		return false
	}
	ip := net.ParseIP(req.SourceIP)
	return ip != nil && !ip.IsLoopback()
}

// dialFrom dials target from the client's address and port.
func dialFrom(target, sourceIP string, sourcePort int) (net.Conn, error) {
	d := net.Dialer{
		Timeout:   transparentDialTimeout,
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(sourceIP), Port: sourcePort},
		Control: func(network, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				if network == "tcp6" {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
				}
			}); err != nil {
				return err
			}
			return serr
		},
	}
	return d.Dial("tcp", target)
}

// routed checks that the namespace routes the answers to connections dialled from a client's
// address (ClientAddressMark); once it does, it is not checked again.
func (d *portChild) routed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.routingOK {
		if err := d.checkRouting(); err != nil {
			return fmt.Errorf("the client's address cannot be kept (%w): refused rather than forwarded from the node's own address, which NetworkPolicy admits", err)
		}
		d.routingOK = true
	}
	return nil
}

// checkSourceRouting reports whether namespace-init has set up the routing of ClientAddressMark
// in this network namespace: its last step, the rule for marked packets, is there. The port
// driver runs in the namespace's first process, which reaps every exited process, so it cannot
// run iptables itself and know how it ended.
func checkSourceRouting() error {
	rules, err := netlink.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, r := range rules {
		if r.Mark == ClientAddressMark && r.Table == ClientAddressTable {
			return nil
		}
	}
	return errors.New("the routing for it is not set up (yet): u7s namespace-init sets it up as the node starts")
}
