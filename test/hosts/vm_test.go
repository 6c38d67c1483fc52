package hosts

import (
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestQemuArgs(t *testing.T) {
	h := &Host{Name: "vm1", Addr: netip.MustParseAddr("172.31.77.21"), VM: true, Base: "/c/bookworm-vm-0123.raw"}
	argv := qemuArgs(h)
	if !slices.Equal(argv[:4], []string{"nice", "-n", "19", "qemu-system-x86_64"}) {
		t.Errorf("qemu does not run niced: %q", argv[:4])
	}
	if slices.Contains(argv, "-no-reboot") {
		t.Error("-no-reboot: a reboot from inside would end the VM")
	}
	// The value following each option.
	opt := map[string][]string{}
	for i := 4; i+1 < len(argv); i += 2 {
		if !strings.HasPrefix(argv[i], "-") {
			t.Fatalf("argument %q where an option was expected in %q", argv[i], argv)
		}
		opt[argv[i]] = append(opt[argv[i]], argv[i+1])
	}
	for o, want := range map[string]string{
		"-kernel": "/c/bookworm-vm-0123.vmlinuz",
		"-initrd": "/c/bookworm-vm-0123.initrd",
		"-drive":  "file=" + diskFile("vm1") + ",format=qcow2,if=virtio,discard=unmap",
		"-netdev": "tap,id=net0,ifname=u7stap21,script=no,downscript=no",
		"-fw_cfg": "name=opt/u7s/host,file=" + seedFile("vm1"),
	} {
		if got := opt[o]; len(got) != 1 || got[0] != want {
			t.Errorf("%s %q, want %q", o, got, want)
		}
	}
	if !slices.Contains(opt["-device"], "virtio-net-pci,netdev=net0,mac=52:54:00:1f:4d:15") {
		t.Errorf("no NIC with the address's MAC: %q", opt["-device"])
	}
	for _, want := range []string{"root=/dev/vda", "systemd.unified_cgroup_hierarchy=1", "systemd.hostname=vm1", "systemd.machine_id=" + machineID(h)} {
		if !slices.Contains(strings.Fields(opt["-append"][0]), want) {
			t.Errorf("kernel command line %q lacks %s", opt["-append"][0], want)
		}
	}
	if id := machineID(h); len(id) != 32 || id == machineID(&Host{Name: "vm2", Addr: netip.MustParseAddr("172.31.77.22")}) {
		t.Errorf("machine id %q: not 32 hex digits, or another VM's", id)
	}
}

// The command exec runs in a VM reaches it through ssh as one shell command line: each word
// must come back as it was.
func TestShellQuote(t *testing.T) {
	words := []string{"plain", "", "two words", "it's", `"dq" $HOME`, "a\nb", "*", "--", "x=y;z", `back\slash`, "'"}
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, shellQuote(w))
	}
	out, err := exec.Command("sh", "-c", "set -- "+strings.Join(quoted, " ")+`; for w in "$@"; do printf '%s\0' "$w"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00"); !slices.Equal(got, words) {
		t.Errorf("through sh: %q, want %q", got, words)
	}
}
