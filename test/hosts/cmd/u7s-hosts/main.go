// Command u7s-hosts is scripts/hosts.sh: test hosts on this machine (package hosts).
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/u7s/u7s/test/hosts"
)

const usage = `usage: scripts/hosts.sh COMMAND
  up [--fresh] [--own-registry] [--deb FILE] [--cpu-weight N] [--bind SRC[:DST]]...
     [--bind-ro SRC[:DST]]... NAME...
                        make (once) and boot Debian 12 hosts with u7s installed (the node's
                        packages and this tree's build); --fresh: nothing of u7s at all;
                        --deb: that package instead of this tree's (an older release);
                        registry.local is this machine unless --own-registry; --cpu-weight:
                        the host's CPU share, 1-10000 (default 100), kept across boots
  up --vm [--fresh] [--own-registry] [--deb FILE] NAME...
                        the same as qemu VMs with their own kernel (cgroup v2, systemd),
                        on the same bridge; about ten times slower (software emulation)
  ip NAME               the host's address
  leader NAME           the pid of the host's init (for nsenter from this machine; not for VMs)
  gateway               this machine's address on the hosts' bridge (registry.local for them)
  exec NAME -- CMD...   run CMD as root on the host (stdin, stdout and the exit status kept)
  poweroff NAME         shut the host down (its disk stays)
  boot NAME             boot it again (same address, same disk)
  list                  the hosts, running or not, nspawn or vm
  down [NAME...]        remove those hosts, or every host, the bridge and their state (safe to repeat)
  image                 make the cached fresh root only
  prepare               raise this machine's kernel limits the hosts share (as up does), so
                        that tests watching this machine's state beside the hosts see no change`

func main() {
	hosts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "[hosts] "+format+"\n", args...) }
	code, err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "hosts: error:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func run(args []string) (int, error) {
	if len(args) == 0 {
		return 2, errors.New(usage)
	}
	if os.Geteuid() != 0 {
		return 1, errors.New("the test hosts need root (systemd-nspawn, qemu, a bridge, cgroups)")
	}
	cmd, args := args[0], args[1:]
	one := func() (string, error) {
		if len(args) != 1 {
			return "", fmt.Errorf("%s takes one host name\n%s", cmd, usage)
		}
		return args[0], nil
	}
	switch cmd {
	case "image":
		return 0, hosts.EnsureImage()
	case "prepare":
		return 0, hosts.RaiseKernelLimits()
	case "up":
		var o hosts.Options
		var names []string
		for i := 0; i < len(args); i++ {
			switch a := args[i]; {
			case (a == "--bind" || a == "--bind-ro") && i+1 < len(args):
				if a == "--bind" {
					o.Binds = append(o.Binds, args[i+1])
				} else {
					o.BindsRO = append(o.BindsRO, args[i+1])
				}
				i++
			case a == "--deb" && i+1 < len(args):
				o.Deb = args[i+1]
				i++
			case a == "--cpu-weight" && i+1 < len(args):
				w, err := strconv.Atoi(args[i+1])
				if err != nil {
					return 2, fmt.Errorf("--cpu-weight %q: want a number from 1 to 10000", args[i+1])
				}
				o.CPUWeight = w
				i++
			case a == "--own-registry":
				o.OwnRegistry = true
			case a == "--fresh":
				o.Fresh = true
			case a == "--vm":
				o.VM = true
			case strings.HasPrefix(a, "-"):
				return 2, fmt.Errorf("unknown flag %s\n%s", a, usage)
			default:
				names = append(names, a)
			}
		}
		if len(names) == 0 {
			return 2, errors.New("up needs at least one host name\n" + usage)
		}
		return 0, hosts.Up(names, o)
	case "ip":
		n, err := one()
		if err != nil {
			return 2, err
		}
		h, err := hosts.Load(n)
		if err != nil {
			return 1, err
		}
		fmt.Println(h.Addr)
		return 0, nil
	case "leader":
		n, err := one()
		if err != nil {
			return 2, err
		}
		pid, err := hosts.Leader(n)
		if err != nil {
			return 1, err
		}
		fmt.Println(pid)
		return 0, nil
	case "gateway":
		fmt.Println(hosts.Gateway)
		return 0, nil
	case "list":
		for _, n := range hosts.List() {
			h, _ := hosts.Load(n)
			state, kind := "off", "nspawn"
			if hosts.Running(n) {
				state = "running"
			}
			if h.VM {
				kind = "vm"
			}
			fmt.Printf("%s\t%s\t%s\t%s\n", n, h.Addr, state, kind)
		}
		return 0, nil
	case "exec":
		if len(args) < 3 || args[1] != "--" {
			return 2, errors.New("usage: exec NAME -- CMD...")
		}
		argv, err := hosts.EnterArgv(args[0], nil, args[2:])
		if err != nil {
			return 1, err
		}
		return 1, syscall.Exec(argv[0], argv, os.Environ())
	case "poweroff":
		n, err := one()
		if err != nil {
			return 2, err
		}
		h, err := hosts.Load(n)
		if err != nil {
			return 1, err
		}
		timeout := 60 * time.Second
		if h.VM { // its systemd stops a node ten times slower
			timeout = 5 * time.Minute
		}
		return 0, hosts.Poweroff(n, timeout)
	case "boot":
		n, err := one()
		if err != nil {
			return 2, err
		}
		return 0, hosts.Boot(n)
	case "down":
		if len(args) > 0 {
			return 0, hosts.Remove(args)
		}
		return 0, hosts.Down()
	case "run": // the runner, started by up and boot
		n, err := one()
		if err != nil {
			return 2, err
		}
		return 0, hosts.Run(n)
	}
	return 2, fmt.Errorf("unknown command %q\n%s", cmd, usage)
}
