package nsinit

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// In a network namespace of its own: the host's address is local in the replies' table, one
// rule selects that table by the mark, and the two iptables rules mark a connection opened from
// the address and its replies; a second run adds nothing.
func TestRepliesToHostAddress(t *testing.T) {
	inOwnNetNS(t)
	ip := net.ParseIP("192.0.2.2").To4()
	link := tap0(t, ip, 32)
	for range 2 {
		if err := repliesToHostAddress(ip, link); err != nil {
			t.Fatal(err)
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: hostAddressTable}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 1 || routes[0].Type != unix.RTN_LOCAL || !routes[0].Dst.IP.Equal(ip) {
		t.Errorf("table %d: %+v, want the one local route of %s", hostAddressTable, routes, ip)
	}
	rules, err := netlink.RuleList(netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rules {
		if r.Table == hostAddressTable {
			n++
			if r.Mark != hostAddressMark || r.Mask == nil || *r.Mask != hostAddressMark {
				t.Errorf("the rule selects mark %#x/%v", r.Mark, r.Mask)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d rules look up table %d, want 1", n, hostAddressTable)
	}
	out, err := exec.Command("iptables", "-w", "-t", "mangle", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, want := range []string{"-A OUTPUT -s 192.0.2.2/32 -m conntrack --ctstate NEW", "-A PREROUTING -m connmark --mark 0x1000000/0x1000000"} {
		if c := strings.Count(string(out), want); c != 1 {
			t.Errorf("%d rules %q in the mangle table, want 1:\n%s", c, want, out)
		}
	}
}

// In a network namespace of its own: a connection dialled from a client's address that is not
// the namespace's (as the port driver dials) to a server of the namespace is answered here,
// by the mark and the table repliesToClientAddresses sets up; without them it never connects.
func TestRepliesToClientAddresses(t *testing.T) {
	inOwnNetNS(t)
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	tap0(t, net.IPv4(10, 0, 2, 100), 24)
	ln, err := net.Listen("tcp4", "10.0.2.100:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello"))
			c.Close()
		}
	}()
	dial := func() error {
		d := net.Dialer{
			Timeout:   2 * time.Second,
			LocalAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.7")},
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1) }); err != nil {
					return err
				}
				return serr
			},
		}
		c, err := d.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		if err == nil && string(b) != "hello" {
			err = fmt.Errorf("read %q", b)
		}
		return err
	}
	if err := dial(); err == nil {
		t.Fatal("a client's address was answered here before any routing for it: the test shows nothing")
	}
	for range 2 {
		if err := repliesToClientAddresses(); err != nil {
			t.Fatal(err)
		}
	}
	if err := dial(); err != nil {
		t.Errorf("dialled from a client's address: %v", err)
	}
	out, err := exec.Command("iptables", "-w", "-t", "mangle", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if c := strings.Count(string(out), "CONNMARK --set-xmark 0x2000000/0x2000000"); c != 1 {
		t.Errorf("%d rules mark the clients' connections, want 1 (a second run adds none):\n%s", c, out)
	}
}

// inOwnNetNS moves the test's thread into a new network namespace (root and iptables needed).
func inOwnNetNS(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace of its own")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("no iptables")
	}
	runtime.LockOSThread() // the thread ends with the test, never back in the pool
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
}

// tap0 makes the namespace's tap0 (a veth here) with ip/bits, up.
func tap0(t *testing.T, ip net.IP, bits int) netlink.Link {
	t.Helper()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tap0"}, PeerName: "tap0peer"}); err != nil {
		t.Fatal(err)
	}
	link, err := netlink.LinkByName("tap0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	return link
}
