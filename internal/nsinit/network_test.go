package nsinit

import (
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// In a network namespace of its own: the host's address is local in the replies' table, one
// rule selects that table by the mark, and the two iptables rules mark a connection opened from
// the address and its replies; a second run adds nothing.
func TestRepliesToHostAddress(t *testing.T) {
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
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "tap0"}, PeerName: "tap0peer"}); err != nil {
		t.Fatal(err)
	}
	link, err := netlink.LinkByName("tap0")
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP("192.0.2.2").To4()
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
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
