//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/u7s/u7s/internal/kubelet"
	"github.com/u7s/u7s/internal/paths"
)

// The VM test's hosts: vm1 a qemu VM with its own kernel (cgroup v2 unified, systemd), vmcp an
// nspawn host on this machine's kernel (cgroup v1 here) as its control plane. The VM is a worker:
// under software emulation a control plane's own load (etcd, the API server, the controllers)
// alone takes more CPU than the VM's two emulated cores have, and init took 21 minutes there
// on an idle machine.
const vmHost, vmControlPlane = "vm1", "vmcp"

// qosPods are a Guaranteed, a Burstable (two containers) and a BestEffort pod. Each container
// puts 40 MiB in the pod's /dev/shm (charged to its own cgroup) and then sleeps, its sleep's
// argument marking its process on the host.
const qosPods = `apiVersion: v1
kind: Pod
metadata: {name: qos-g}
spec:
  nodeName: %[2]s
  containers:
  - name: c
    image: %[1]s
    command: [sh, -c, "dd if=/dev/zero of=/dev/shm/c bs=1M count=40 2>/dev/null; exec sleep 3601"]
    resources: {limits: {cpu: 200m, memory: 128Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: qos-b}
spec:
  nodeName: %[2]s
  containers:
  - name: a
    image: %[1]s
    command: [sh, -c, "dd if=/dev/zero of=/dev/shm/a bs=1M count=40 2>/dev/null; exec sleep 3602"]
    resources: {requests: {memory: 32Mi}, limits: {memory: 256Mi}}
  - name: b
    image: %[1]s
    command: [sh, -c, "dd if=/dev/zero of=/dev/shm/b bs=1M count=20 2>/dev/null; exec sleep 3603"]
    resources: {requests: {cpu: 10m}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: vm-data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: qos-be}
spec:
  # Through the scheduler (not nodeName): its claim of the default StorageClass is made on the
  # node the scheduler picks.
  nodeSelector: {kubernetes.io/hostname: %[2]s}
  containers:
  - name: c
    image: %[1]s
    command: [sh, -c, "echo on-v2 >/data/f; dd if=/dev/zero of=/dev/shm/c bs=1M count=40 2>/dev/null; exec sleep 3604"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: vm-data}}]
`

// qosContainers: each marked container's pod, and the QoS parent its pod's cgroup must be in.
var qosContainers = []struct{ marker, pod, qos string }{
	{"3601", "qos-g", ""}, {"3602", "qos-b", "burstable/"}, {"3603", "qos-b", "burstable/"}, {"3604", "qos-be", "besteffort/"},
}

// procsSh is a shell function, procs ARGV: the pids whose command line is ARGV (no procps on a
// minimal host).
const procsSh = `procs() { for d in /proc/[0-9]*; do [ "$({ tr '\0' ' ' <$d/cmdline; } 2>/dev/null)" = "$* " ] && echo ${d#/proc/}; done; true; }
`

// unitCgroup is u7s.service's cgroup on a v2 host, the subtree systemd delegates to the node.
const unitCgroup = "/system.slice/u7s.service"

// TestVM runs u7s on a host like its users': Debian 12 with its own kernel, systemd and cgroup
// v2 unified (a qemu VM, about ten times slower than this machine under software emulation), as
// a worker that joins an nspawn control plane with cgroup v1: one cluster of both versions.
func TestVM(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end test needs root")
	}
	const vm, cp = vmHost, vmControlPlane
	if out, err := hostsCmd(t, "", "down", vm, cp); err != nil {
		t.Fatalf("removing old hosts: %v\n%s", err, out)
	}
	// The VM boots (minutes under emulation) while the control plane is made and inits: the two
	// one after the other left the booted VM idle, its emulation still costing whole cores.
	start := time.Now()
	vmUp := make(chan error, 1)
	go func() {
		// The VM's emulation (both vCPUs in one host thread) needs a whole core of this machine:
		// three times a host's CPU weight, or beside the other suites' hosts it gets too little
		// to join in an hour.
		out, err := hostsCmd(t, "", "up", "--vm", "--cpu-weight", "300", vm)
		if err == nil {
			t.Logf("FIGURE VM made (its base image cached) and booted: %.0f s", time.Since(start).Seconds())
			pub, rerr := os.ReadFile(signingKey(t))
			if rerr != nil {
				err = rerr
			} else if out, err = hostsCmd(t, string(pub), "exec", vm, "--", "sh", "-c", "mkdir -p /etc/u7s && cat > "+hostSigningKey); err != nil {
				err = fmt.Errorf("copying the signing key to %s: %v\n%s", vm, err, out)
			}
		} else {
			err = fmt.Errorf("hosts.sh up --vm: %v\n%s", err, out)
		}
		vmUp <- err
	}()
	waitVM := func(t *testing.T) {
		t.Helper()
		if err := <-vmUp; err != nil {
			vmUp <- err
			t.Fatal(err)
		}
		vmUp <- nil
	}
	t.Cleanup(func() {
		// The VM's boot is done, one way or another, before its host is removed.
		err := <-vmUp
		vmUp <- err
		if t.Failed() {
			logs, _ := onHost(t, vm, "systemctl status u7s --no-pager | head -20; tail -n 30 /var/log/u7s/kubelet.log /var/log/u7s/crio.log 2>&1")
			t.Logf("on %s:\n%s", vm, logs)
			if os.Getenv("U7S_E2E_KEEP") != "" {
				t.Logf("keeping the hosts (U7S_E2E_KEEP)")
				return
			}
		}
		if out, err := hostsCmd(t, "", "down", vm, cp); err != nil {
			t.Errorf("removing hosts: %v\n%s", err, out)
		}
	})
	if out, err := hostsCmd(t, "", "up", cp); err != nil {
		t.Fatalf("hosts.sh up: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(signingKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := hostsCmd(t, string(pub), "exec", cp, "--", "sh", "-c", "mkdir -p /etc/u7s && cat > "+hostSigningKey); err != nil {
		t.Fatalf("copying the signing key to %s: %v\n%s", cp, err, out)
	}

	t.Run("a VM with cgroup v2 joins an nspawn control plane with cgroup v1 as a worker: v2-delegated, Ready", func(t *testing.T) {
		out, err := onHost(t, cp, "u7s init --image-signing-key "+hostSigningKey)
		if err != nil {
			t.Fatalf("init on %s: %v: %s\n%s\n%s", cp, err, why(out), tail(out, 40), keptLogs(t, cp, out))
		}
		if st := mustOnHost(t, cp, "u7s status"); !strings.Contains(st, "v1-delegated") {
			t.Errorf("the nspawn control plane is not v1-delegated:\n%s", st)
		}
		waitVM(t)
		if out := mustOnHost(t, vm, "stat -fc %T /sys/fs/cgroup"); strings.TrimSpace(out) != "cgroup2fs" {
			t.Fatalf("the VM does not boot cgroup v2 unified: /sys/fs/cgroup is %s", out)
		}
		start := time.Now()
		// --timeout: a host slower still than the emulated VM alone, its CPU shared with the
		// other suites' hosts (each step took up to 30 times as long as here).
		if out, err := onHost(t, vm, joinLine(t, out, false)+" --timeout 30m"); err != nil {
			t.Fatalf("worker join on the VM: %v: %s\n%s", err, why(out), tail(out, 40))
		}
		t.Logf("FIGURE u7s join to Ready, the VM (emulated) as a worker: %.0f s", time.Since(start).Seconds())
		if st := mustOnHost(t, vm, "u7s status"); !strings.Contains(st, "v2-delegated") {
			t.Errorf("u7s status on the VM does not say v2-delegated:\n%s", st)
		}
		nodesReady(t, cp, 5*time.Minute, cp, vm)
		// flannel and kube-proxy are pods in the unit's subtree, not beside it.
		out = mustOnHost(t, vm, `for d in /proc/[0-9]*; do case "$(cat $d/comm 2>/dev/null)" in flanneld|kube-proxy) cat $d/cgroup;; esac; done`)
		if strings.Count(out, "0::"+unitCgroup+"/kubepods/") != 2 {
			t.Errorf("flanneld and kube-proxy are not in the unit's kubepods:\n%s", out)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("each container in its pod's cgroup under its QoS parent; kubepods' memory.max is allocatable; the summary API's pod memory; a local volume and kubectl top of the VM", func(t *testing.T) {
		applyOn(t, cp, fmt.Sprintf(qosPods, busybox, vm))
		// Pulls and container creations on the emulated VM took up to 17 minutes beside the
		// other lanes' busiest minutes.
		start := time.Now()
		mustKc(t, cp, "wait", "--for=condition=Ready", "pod/qos-g", "pod/qos-b", "pod/qos-be", "--timeout=1800s")
		t.Logf("FIGURE the QoS pods Ready on the VM: %.0f s", time.Since(start).Seconds())
		uid := map[string]string{}
		for _, p := range []string{"qos-g", "qos-b", "qos-be"} {
			uid[p] = strings.TrimSpace(mustKc(t, cp, "get", "pod", p, "-o", "jsonpath={.metadata.uid}"))
		}
		// Each marked process's cgroup and that cgroup's memory.current, once the containers'
		// /dev/shm files are written.
		var cg map[string]string
		usage := map[string]int64{}
		eventually(t, "every container's 40 or 20 MiB charged", 5*time.Minute, func() error {
			out, err := onHost(t, vm, procsSh+`for m in 3601 3602 3603 3604; do p=$(procs sleep $m); g=$(sed -n 's/^0:://p' /proc/$p/cgroup); echo "$m $g $(cat /sys/fs/cgroup$g/memory.current)"; done`)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			cg = map[string]string{}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(l)
				if len(f) != 3 {
					return fmt.Errorf("no process or cgroup: %q", l)
				}
				n, _ := strconv.ParseInt(f[2], 10, 64)
				if n < 20<<20 {
					return fmt.Errorf("%s's memory.current %d", f[1], n)
				}
				cg[f[0]], usage[f[0]] = f[1], n
			}
			return nil
		})
		for _, c := range qosContainers {
			want := unitCgroup + "/kubepods/" + c.qos + "pod" + uid[c.pod] + "/"
			if !strings.HasPrefix(cg[c.marker], want) {
				t.Errorf("a container of %s is in %s, want inside %s", c.pod, cg[c.marker], want)
			}
		}

		// The kubelet gives kubepods all but what it reserves: allocatable plus the hard
		// eviction threshold.
		alloc := resource.MustParse(strings.TrimSpace(mustKc(t, cp, "get", "node", vm, "-o", "jsonpath={.status.allocatable.memory}")))
		alloc.Add(resource.MustParse(kubelet.Config().EvictionHard["memory.available"]))
		if got := strings.TrimSpace(mustOnHost(t, vm, "cat /sys/fs/cgroup"+unitCgroup+"/kubepods/memory.max")); got != strconv.FormatInt(alloc.Value(), 10) {
			t.Errorf("kubepods' memory.max is %s, want node allocatable and the eviction threshold, %d", got, alloc.Value())
		}

		// The summary API sees each pod's memory in its cgroup: within 10 % of its containers'.
		eventually(t, "the summary API's pod memory near its containers' memory.current", 5*time.Minute, func() error {
			raw, err := kc(t, cp, "get", "--raw", "/api/v1/nodes/"+vm+"/proxy/stats/summary")
			if err != nil {
				return fmt.Errorf("%v: %s", err, raw)
			}
			var s struct {
				Pods []struct {
					PodRef struct{ Name string } `json:"podRef"`
					Memory struct {
						UsageBytes int64 `json:"usageBytes"`
					} `json:"memory"`
				} `json:"pods"`
			}
			if err := json.Unmarshal([]byte(raw), &s); err != nil {
				return fmt.Errorf("summary: %v", err)
			}
			sum := map[string]int64{}
			for _, c := range qosContainers {
				sum[c.pod] += usage[c.marker]
			}
			for _, p := range s.Pods {
				want, ok := sum[p.PodRef.Name]
				if !ok {
					continue
				}
				if d := p.Memory.UsageBytes - want; d < -want/10 || d > want/10 {
					return fmt.Errorf("pod %s: summary %d bytes, its containers' memory.current %d", p.PodRef.Name, p.Memory.UsageBytes, want)
				}
				delete(sum, p.PodRef.Name)
			}
			if len(sum) > 0 {
				return fmt.Errorf("no summary of %v", sum)
			}
			return nil
		})

		// The default StorageClass made qos-be's volume on the VM, and the Metrics API reads
		// the VM's kubelet (its cgroup v2 statistics) over TLS.
		pv := strings.TrimSpace(mustKc(t, cp, "get", "pvc", "vm-data", "-o", "jsonpath={.spec.volumeName}"))
		if got := mustOnHost(t, vm, "cat "+paths.VolumesDir+"/"+pv+"/f"); !strings.Contains(got, "on-v2") {
			t.Errorf("qos-be's volume %s on the VM holds %q", pv, got)
		}
		eventually(t, "kubectl top node "+vm, 5*time.Minute, func() error {
			out, err := kc(t, cp, "top", "node", vm, "--no-headers")
			if err != nil || !strings.HasPrefix(out, vm+" ") {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	})

	t.Run("a pod's limits are memory.max, cpu.max and pids.max of its cgroup; over its memory limit it is OOM-killed", func(t *testing.T) {
		pod := unitCgroup + "/kubepods/pod" + strings.TrimSpace(mustKc(t, cp, "get", "pod", "qos-g", "-o", "jsonpath={.metadata.uid}"))
		got := strings.Fields(mustOnHost(t, vm, "cd /sys/fs/cgroup"+pod+" && cat memory.max cpu.max pids.max"))
		// 128Mi; 200m is 20 ms of each 100 ms.
		if want := []string{"134217728", "20000", "100000", strconv.Itoa(kubelet.PodPidsLimit)}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("qos-g's cgroup %s: memory.max, cpu.max, pids.max %v, want %v", pod, got, want)
		}
		mustKc(t, cp, "delete", "pod", "qos-g", "qos-b", "qos-be", "--now")
		mustKc(t, cp, "delete", "pvc", "vm-data", "--wait=false")
		applyOn(t, cp, hogPod(vm))
		eventually(t, "hog OOM-killed", 10*time.Minute, func() error {
			out, _ := kc(t, cp, "get", "pod", "hog", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.reason}")
			if strings.TrimSpace(out) != "OOMKilled" {
				return fmt.Errorf("state %q", out)
			}
			return nil
		})
		mustKc(t, cp, "delete", "pod", "hog", "--now")
	})

	// runsPod: a new pod runs on the VM, its kubelet and cri-o at work (a node still Ready from
	// before a restart proves nothing).
	runsPod := func(t *testing.T, name string, timeout time.Duration) {
		t.Helper()
		applyOn(t, cp, `apiVersion: v1
kind: Pod
metadata: {name: `+name+`}
spec:
  nodeName: `+vm+`
  containers:
  - {name: c, image: `+busybox+`, command: [sleep, "3600"]}`)
		eventually(t, name+" running on the VM", timeout, func() error {
			out, err := kc(t, cp, "get", "pod", name, "-o", "jsonpath={.status.phase}")
			if err != nil || strings.TrimSpace(out) != "Running" {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		mustKc(t, cp, "delete", "pod", name, "--now")
	}

	// A reboot, not also a systemctl restart: the reboot stops and starts the unit too, with
	// the cgroup tree made anew by systemd at boot; the two took over half an hour of the
	// emulated VM beside the other lanes. The nspawn hosts' tests restart u7s many times.
	t.Run("a reboot of the VM: its node comes back by itself", func(t *testing.T) {
		start := time.Now()
		if out, err := hostsCmd(t, "", "poweroff", vm); err != nil {
			t.Fatalf("poweroff: %v\n%s", err, out)
		}
		// The control plane sees it gone before it comes back: Ready then is the new boot's.
		eventually(t, "the VM's node NotReady while it is off", 5*time.Minute, func() error {
			out, err := kc(t, cp, "get", "node", vm, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			if err != nil || strings.TrimSpace(out) == "True" {
				return fmt.Errorf("%v: Ready %s", err, out)
			}
			return nil
		})
		if out, err := hostsCmd(t, "", "boot", vm); err != nil {
			t.Fatalf("boot: %v\n%s", err, out)
		}
		nodesReady(t, cp, 25*time.Minute, vm)
		runsPod(t, "after-boot", 10*time.Minute)
		t.Logf("FIGURE VM powered off, booted, and a new pod running on it: %.0f s", time.Since(start).Seconds())
	})

	// The watch on cgroup v2, after the reboot: the CIS benchmark (each failed
	// check critical), drift from what join wrote, unsigned images, writes into containers.
	t.Run("u7s check all on the VM: no CIS check fails, nothing critical", func(t *testing.T) {
		out, err := onHost(t, vm, "u7s check all --no-journal")
		t.Logf("u7s check all on the VM:\n%s", tail(out, 5))
		if err != nil || strings.Contains(out, "critical ") {
			t.Errorf("u7s check all: %v\n%s", err, out)
		}
	})
}
