package namespace

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// DialInNet connects to addr over network from inside the network namespace of process pid
// (the node's namespace, ChildPID): what a hostNetwork pod listens on there, on its loopback,
// is out of the host's reach. Needs CAP_SYS_ADMIN over that namespace (root).
func DialInNet(pid int, network, addr string, timeout time.Duration) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		// A thread that cannot go back to its namespace stays locked, and the runtime ends it
		// with this goroutine.
		runtime.LockOSThread()
		conn, back, err := dialInNet(pid, network, addr, timeout)
		if back {
			runtime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// dialInNet runs on a locked thread; back reports the thread is in its own namespace again.
func dialInNet(pid int, network, addr string, timeout time.Duration) (conn net.Conn, back bool, err error) {
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, true, err
	}
	defer own.Close()
	target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, true, fmt.Errorf("the node's network namespace: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("entering the node's network namespace (pid %d): %w", pid, err)
	}
	// The socket belongs to the namespace it is made in, whichever thread uses it later.
	conn, err = net.DialTimeout(network, addr, timeout)
	if serr := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); serr != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, false, fmt.Errorf("leaving the node's network namespace: %w", serr)
	}
	return conn, true, err
}
