package hosts

// VM hosts: Debian 12 in qemu, with a kernel of their own. The nspawn hosts share this
// machine's kernel and so its cgroup hierarchy, which may be v1; a VM boots its systemd on
// cgroup v2 whatever this machine runs. qemu emulates the CPU in software (TCG: KVM is not
// always usable where the tests run), so a VM is about ten times slower than an nspawn host.
//
// A VM's disk is a copy-on-write overlay of a cached base image: the node root (or the fresh
// one) with a kernel, udev and sshd, and u7s's .deb installed, as one ext4 file system. Its
// own settings (address, registry.local, name servers) reach it through qemu's fw_cfg at its
// first boot; commands run in it through ssh, with a key kept in CacheDir.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/u7s/u7s/internal/fsutil"
)

const (
	vmMemoryMiB = 4096
	vmCPUs      = 2
	// vmDiskSize fits a Kubernetes node's images and logs; the files are sparse.
	vmDiskSize = "32G"
	// vmBootTimeout: a first boot under TCG takes about a minute on an idle machine, and many
	// more when the machine's other tests leave the niced guest little CPU.
	vmBootTimeout = 10 * time.Minute
)

// vmPackages are what a VM needs beyond a container: its kernel and initramfs, udev (on a
// machine with a writable /sys networkd waits for it), and sshd with logind sessions, through
// which commands run in it.
var vmPackages = []string{"linux-image-amd64", "udev", "openssh-server", "libpam-systemd"}

func diskFile(name string) string  { return filepath.Join(hostDir(name), "disk.qcow2") }
func seedFile(name string) string  { return filepath.Join(hostDir(name), "seed.tar") }
func qmpSocket(name string) string { return filepath.Join(RunDir, name+".qmp") }
func sshSocket(name string) string { return filepath.Join(RunDir, name+".ssh") }
func vmKey() string                { return filepath.Join(CacheDir, "vm-ssh-key") }

// A base image's kernel and initrd lie next to it: qemu boots them directly.
func vmKernel(base string) string { return strings.TrimSuffix(base, ".raw") + ".vmlinuz" }
func vmInitrd(base string) string { return strings.TrimSuffix(base, ".raw") + ".initrd" }

// tapName is the VM's network device on the bridge, named by its address (an interface name
// has 15 characters at most, a host name up to 32).
func tapName(h *Host) string { return fmt.Sprintf("u7stap%d", h.Addr.As4()[3]) }

// macAddr is fixed by the address (locally administered), so the guest's network file can
// match it.
func macAddr(h *Host) string {
	a := h.Addr.As4()
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", a[1], a[2], a[3])
}

// machineID is the VM's, stable across its boots and distinct between hosts; the base image's
// own stays in its /etc, so that no boot is a first boot (systemd-firstboot would prompt on
// the console).
func machineID(h *Host) string {
	sum := sha256.Sum256([]byte("u7s-hosts " + h.Name + " " + h.Addr.String()))
	return hex.EncodeToString(sum[:16])
}

// seedUnit puts the VM's own files in place at its first boot, before the network starts.
const seedUnit = `[Unit]
Description=This test host's address, hosts and name servers, from qemu's fw_cfg (first boot)
DefaultDependencies=no
After=systemd-remount-fs.service
Before=sysinit.target systemd-networkd.service
ConditionPathExists=!/var/lib/u7s-test-seeded

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/modprobe qemu_fw_cfg
ExecStart=/bin/tar -xf /sys/firmware/qemu_fw_cfg/by_name/opt/u7s/host/raw -C /
ExecStart=/bin/touch /var/lib/u7s-test-seeded

[Install]
WantedBy=sysinit.target
`

// initramfsHook puts in the initramfs the drivers of the VM's root and nothing else
// (MODULES=list): unpacking Debian's default one, every driver there is, takes most of a
// minute under emulation.
const initramfsHook = `#!/bin/sh
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_pci virtio_blk ext4
`

type vmFile struct {
	path, content string
	mode          os.FileMode
}

// vmFiles are what the VM root has beyond its packages, in place before they are installed.
// sshd's host keys are made at each VM's first boot (Debian's unit only tests them).
func vmFiles(pubKey string) []vmFile {
	return []vmFile{
		{"etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 1\n", 0o644},
		{"root/.ssh/authorized_keys", pubKey, 0o600},
		{"etc/systemd/system/u7s-test-seed.service", seedUnit, 0o644},
		{"etc/systemd/system/ssh.service.d/keys.conf", "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n", 0o644},
		{"etc/initramfs-tools/conf.d/u7s-vm.conf", "MODULES=list\n", 0o644},
		{"etc/initramfs-tools/hooks/u7s-vm", initramfsHook, 0o755},
	}
}

// ensureVMKey makes the key pair ssh uses to reach the VMs, once, and returns its public half.
func ensureVMKey() (string, error) {
	if b, err := os.ReadFile(vmKey() + ".pub"); err == nil {
		return string(b), nil
	}
	_ = os.Remove(vmKey())
	if err := run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "u7s-hosts", "-f", vmKey()); err != nil {
		return "", err
	}
	b, err := os.ReadFile(vmKey() + ".pub")
	return string(b), err
}

// ensureVMRoot is the fresh or node root with vmPackages and vmFiles: made once, cached by
// what it holds. It returns the directory and that description.
func ensureVMRoot(fresh bool) (string, string, error) {
	src := nodeImageDir()
	if fresh {
		src = imageDir()
	}
	srcWant, err := os.ReadFile(src + ".complete")
	if err != nil {
		return "", "", err
	}
	pub, err := ensureVMKey()
	if err != nil {
		return "", "", fmt.Errorf("making the VMs' ssh key: %w", err)
	}
	files := vmFiles(pub)
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%s\x00%o\x00", f.path, f.content, f.mode)
	}
	want := fmt.Sprintf("%s+%s+%x", strings.TrimSpace(string(srcWant)), strings.Join(vmPackages, ","), h.Sum(nil)[:8])
	dir := src + "-vm"
	stamp := dir + ".complete"
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == want {
		return dir, want, nil
	}
	Logf("installing %s into a copy of %s for VMs, once", strings.Join(vmPackages, " "), src)
	start := time.Now()
	tmp := dir + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := run("cp", "-a", "--reflink=auto", src, tmp); err != nil {
		return "", "", err
	}
	for _, f := range files {
		full := filepath.Join(tmp, f.path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", "", err
		}
		if err := os.WriteFile(full, []byte(f.content), f.mode); err != nil {
			return "", "", err
		}
	}
	if err := os.Symlink("/etc/systemd/system/u7s-test-seed.service",
		filepath.Join(tmp, "etc/systemd/system/sysinit.target.wants/u7s-test-seed.service")); err != nil {
		return "", "", err
	}
	script := "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq --no-install-recommends " +
		strings.Join(vmPackages, " ") + " >/dev/null; apt-get clean; rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*"
	cmd := exec.Command("systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", tmp, "--resolv-conf=copy-host",
		"--pipe", "--", "/bin/sh", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("installing %s for VMs: %w\n%s", strings.Join(vmPackages, " "), err, out)
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", "", err
	}
	Logf("VM root ready in %.0fs", time.Since(start).Seconds())
	return dir, want, fsutil.WriteFileAtomic(stamp, []byte(want+"\n"), 0o644)
}

// vmDeb is the u7s package a VM gets: deb, or this tree's newest build.
func vmDeb(deb string) (string, error) {
	if deb != "" {
		_, err := os.Stat(deb)
		return deb, err
	}
	debs, _ := filepath.Glob(filepath.Join(Root(), "_output/u7s_*.deb"))
	if len(debs) == 0 {
		return "", fmt.Errorf("a VM gets u7s from its .deb: no %s/_output/u7s_*.deb (make deb, or up --deb FILE), or nothing of u7s with --fresh", Root())
	}
	return debs[len(debs)-1], nil
}

// ensureVMBase makes the base image a VM's disk overlays: the VM root with the .deb installed
// (none with Fresh), as an ext4 image named by what it holds, with its kernel and initrd
// beside it. It runs under makeHosts's lock, and removes the bases no VM uses any more.
func ensureVMBase(o Options) (string, error) {
	deb := ""
	if !o.Fresh {
		var err error
		if deb, err = vmDeb(o.Deb); err != nil {
			return "", err
		}
	}
	root, want, err := ensureVMRoot(o.Fresh)
	if err != nil {
		return "", err
	}
	key := sha256.New()
	io.WriteString(key, want)
	if deb != "" {
		f, err := os.Open(deb)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(key, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", deb, err)
		}
	}
	base := filepath.Join(CacheDir, fmt.Sprintf("%s-vm-%x.raw", Suite, key.Sum(nil)[:6]))
	if _, err := os.Stat(base); err == nil {
		return base, nil
	}
	what := "no u7s"
	if deb != "" {
		what = filepath.Base(deb)
	}
	Logf("making the VM base image %s (%s), once", base, what)
	start := time.Now()
	src := root
	if deb != "" {
		src = base + ".root"
		_ = os.RemoveAll(src)
		defer os.RemoveAll(src)
		if err := run("cp", "-a", "--reflink=auto", root, src); err != nil {
			return "", err
		}
		if err := installU7s(src, deb); err != nil {
			return "", err
		}
	}
	kernels, _ := filepath.Glob(filepath.Join(src, "boot/vmlinuz-*"))
	if len(kernels) == 0 {
		return "", fmt.Errorf("no kernel in %s/boot", src)
	}
	kernel := kernels[len(kernels)-1]
	initrd := filepath.Join(src, "boot/initrd.img-"+strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-"))
	if err := run("cp", kernel, vmKernel(base)); err != nil {
		return "", err
	}
	if err := run("cp", initrd, vmInitrd(base)); err != nil {
		return "", err
	}
	tmp := base + ".tmp"
	_ = os.Remove(tmp)
	if err := run("mkfs.ext4", "-q", "-F", "-L", "root", "-d", src, tmp, vmDiskSize); err != nil {
		return "", err
	}
	// Read-only: the VMs' overlays rely on it never changing.
	if err := os.Chmod(tmp, 0o444); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, base); err != nil {
		return "", err
	}
	Logf("VM base image ready in %.0fs", time.Since(start).Seconds())
	pruneVMBases(base)
	return base, nil
}

// pruneVMBases removes the base images (each a few GiB) that no VM's disk overlays but keep.
func pruneVMBases(keep string) {
	used := map[string]bool{keep: true}
	for _, n := range List() {
		if h, err := Load(n); err == nil && h.Base != "" {
			used[h.Base] = true
		}
	}
	bases, _ := filepath.Glob(filepath.Join(CacheDir, Suite+"-vm-*.raw"))
	for _, b := range bases {
		if !used[b] {
			Logf("removing the VM base image %s: no VM uses it", b)
			for _, f := range []string{b, vmKernel(b), vmInitrd(b)} {
				_ = os.Remove(f)
			}
		}
	}
}

// createVM gives a VM its address, its disk (an overlay of base) and the files of its first boot.
func createVM(name string, o Options, base string) error {
	addr, err := nextAddr()
	if err != nil {
		return err
	}
	Logf("making VM %s (%s)", name, addr)
	start := time.Now()
	dir := hostDir(name)
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	h := &Host{Name: name, Addr: addr, OwnRegistry: o.OwnRegistry, VM: true, Base: base, CPUWeight: o.CPUWeight}
	if err := run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", diskFile(name)); err != nil {
		return err
	}
	seed, err := seedTar(h)
	if err != nil {
		return err
	}
	if err := os.WriteFile(seedFile(name), seed, 0o644); err != nil {
		return err
	}
	if err := h.save(); err != nil {
		return err
	}
	Logf("made VM %s in %.1fs", name, time.Since(start).Seconds())
	return nil
}

// seedTar holds the VM's own files, unpacked into its root at its first boot.
func seedTar(h *Host) ([]byte, error) {
	resolv, err := resolvConf()
	if err != nil {
		return nil, err
	}
	files := []struct{ path, content string }{
		{"etc/hostname", h.Name + "\n"},
		{"etc/hosts", etcHosts(h)},
		{"etc/resolv.conf", resolv},
		{"etc/systemd/network/10-u7s.network", fmt.Sprintf("[Match]\nMACAddress=%s\n\n[Network]\nAddress=%s/%d\nGateway=%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
			macAddr(h), h.Addr, Subnet.Bits(), Gateway)},
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		hdr := &tar.Header{Name: f.path, Mode: 0o644, Size: int64(len(f.content)), ModTime: time.Now(), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, f.content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// qemuArgs is the VM's command line: niced (software emulation takes whole cores, and the
// machine's other tests are sensitive to load), without -no-reboot so that a reboot from
// inside comes back by itself, and ending only when the guest powers off.
//
// The emulation is set for the least host CPU a guest's work takes, measured with a Go program
// in the guest (JSON, system calls, timers) while this machine's two cores were busy, as they
// are in CI: one host thread for both vCPUs (thread=single: 753-804 host ticks against
// 880-1047 with a thread each; the two threads rarely had two free cores anyway, and a thread
// each pays for cross-vCPU synchronization), the plain qemu64 CPU model (system calls 1.5-1.9 s
// against 2.5-2.7 s with "max": no AVX state for the guest kernel to save on every switch), and
// no speculation mitigations in the guest kernel (its retpolines, emulated; the VM is a test
// host). The guest still has two CPUs, as a small server has.
func qemuArgs(h *Host) []string {
	return []string{"nice", "-n", "19", "qemu-system-x86_64",
		"-name", h.Name, "-machine", "q35", "-accel", "tcg,thread=single", "-cpu", "qemu64",
		"-smp", strconv.Itoa(vmCPUs), "-m", strconv.Itoa(vmMemoryMiB),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", vmKernel(h.Base), "-initrd", vmInitrd(h.Base),
		// tsc=reliable: the guest kernel finds the emulated TSCs unsynchronized and falls back to
		// the HPET, whose every read is an emulated device access and a system call (no vDSO):
		// 30 times the cost of a clock read here, and Go's runtime reads the clock all the time.
		// TCG's TSCs all derive from one host clock, so they are in fact synchronized.
		"-append", "root=/dev/vda rw console=ttyS0 tsc=reliable mitigations=off systemd.unified_cgroup_hierarchy=1 systemd.hostname=" + h.Name +
			" systemd.machine_id=" + machineID(h),
		"-drive", "file=" + diskFile(h.Name) + ",format=qcow2,if=virtio,discard=unmap",
		"-netdev", "tap,id=net0,ifname=" + tapName(h) + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=net0,mac=" + macAddr(h),
		"-device", "virtio-rng-pci",
		"-fw_cfg", "name=opt/u7s/host,file=" + seedFile(h.Name),
		"-chardev", "file,id=console,path=" + consoleLog(h.Name) + ",append=on",
		"-serial", "chardev:console",
		"-qmp", "unix:" + qmpSocket(h.Name) + ",server=on,wait=off",
	}
}

// ensureTap puts the VM's tap device on the bridge.
func ensureTap(h *Host) error {
	tap := tapName(h)
	if exec.Command("ip", "link", "show", tap).Run() != nil {
		if err := run("ip", "tuntap", "add", "dev", tap, "mode", "tap"); err != nil {
			return err
		}
	}
	return run("ip", "link", "set", tap, "master", Bridge, "up")
}

// removeVM removes what a VM has outside its directory: its tap device, qemu's socket and
// ssh's connection.
func removeVM(h *Host) error {
	_ = os.Remove(qmpSocket(h.Name))
	closeSSH(h)
	if exec.Command("ip", "link", "show", tapName(h)).Run() != nil {
		return nil
	}
	return run("ip", "link", "del", tapName(h))
}

// runVM runs qemu until the guest powers off. SIGTERM presses its power button, again every
// 20 seconds: a guest still booting has no logind yet to heed it.
func runVM(h *Host) error {
	argv := qemuArgs(h)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	fmt.Printf("== %s: %s\n", time.Now().Format(time.RFC3339), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-stop:
		for exited := false; !exited; {
			if perr := powerdown(qmpSocket(h.Name)); perr != nil {
				fmt.Printf("== %s: pressing the power button: %v; stopping qemu\n", time.Now().Format(time.RFC3339), perr)
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
			select {
			case err = <-done:
				exited = true
			case <-time.After(20 * time.Second):
			}
		}
	}
	fmt.Printf("== %s: qemu exited (%v)\n", time.Now().Format(time.RFC3339), err)
	return nil
}

// powerdown presses the VM's ACPI power button through qemu's QMP socket: the guest's logind
// shuts it down cleanly and qemu exits.
func powerdown(sock string) error {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	dec := json.NewDecoder(c)
	var greeting json.RawMessage
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("QMP greeting: %w", err)
	}
	for _, command := range []string{"qmp_capabilities", "system_powerdown"} {
		if _, err := fmt.Fprintf(c, "{\"execute\": %q}\n", command); err != nil {
			return err
		}
		for { // events may come before the answer
			var r struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			if err := dec.Decode(&r); err != nil {
				return fmt.Errorf("QMP %s: %w", command, err)
			}
			if r.Error != nil {
				return fmt.Errorf("QMP %s: %s", command, r.Error.Desc)
			}
			if r.Return != nil {
				break
			}
		}
	}
	return nil
}

// sshArgv runs the shell command remote as root on the VM. Commands share one connection,
// kept a while after the last: a new one costs seconds of the guest's emulated CPU, a new
// session on it a tenth of a second. The timeouts are generous: on a loaded machine the niced
// guest takes tens of seconds to answer.
func sshArgv(h *Host, remote string) []string {
	return []string{"ssh", "-i", vmKey(), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=90",
		"-o", "ControlMaster=auto", "-o", "ControlPath=" + sshSocket(h.Name), "-o", "ControlPersist=120",
		"-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=8",
		"root@" + h.Addr.String(), remote}
}

// closeSSH ends the shared connection, if any: one to a guest that has gone would hold the
// next commands until its keepalives fail.
func closeSSH(h *Host) {
	_ = exec.Command("ssh", "-o", "ControlPath="+sshSocket(h.Name), "-O", "exit", "root@"+h.Addr.String()).Run()
	_ = os.Remove(sshSocket(h.Name))
}

// vmEnterArgv is EnterArgv for a VM: ssh, with the same clean environment. Its command runs
// in the session's scope of the guest's systemd (pam_systemd), as a user's would.
func vmEnterArgv(h *Host, env, args []string) ([]string, error) {
	if !Running(h.Name) {
		return nil, fmt.Errorf("host %s is not running: scripts/hosts.sh boot %s", h.Name, h.Name)
	}
	words := append([]string{"exec", "/usr/bin/env", "-i", "PATH=" + hostPath, "HOME=/root", "LANG=C.UTF-8", "TERM=" + os.Getenv("TERM")}, env...)
	words = append(words, args...)
	for i, w := range words {
		words[i] = shellQuote(w)
	}
	argv := sshArgv(h, strings.Join(words, " "))
	ssh, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, err
	}
	argv[0] = ssh
	return argv, nil
}

// shellQuote makes s one word of a POSIX shell's command line (ssh hands the remote one to a shell).
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+/.,:@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// waitVM waits until the guest's systemd has finished booting, asked through ssh once its
// port answers.
func waitVM(h *Host, runner int, start time.Time, timeout time.Duration) error {
	deadline := start.Add(timeout)
	state, sshErr := "", "its port 22 is closed"
	for time.Now().Before(deadline) {
		if !alive(runner) {
			return fmt.Errorf("VM %s stopped while booting: see %s", h.Name, consoleLog(h.Name))
		}
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(h.Addr.String(), "22"), 2*time.Second); err == nil {
			c.Close()
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			argv := sshArgv(h, "systemctl is-system-running --wait")
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			cancel()
			state, sshErr = strings.TrimSpace(string(out)), fmt.Sprintf("%v %s", err, strings.TrimSpace(stderr.String()))
			if state == "running" || state == "degraded" {
				Logf("%s is up (systemd %s) %.0fs after boot", h.Name, state, time.Since(start).Seconds())
				return nil
			}
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("VM %s did not boot within %s (systemd: %q; ssh: %s): see %s", h.Name, timeout, state, sshErr, consoleLog(h.Name))
}
