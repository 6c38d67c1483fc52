//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/u7s/u7s/internal/paths"
)

// podSecurity is the pod-level securityContext of the storage checks' pods, as the restricted
// level asks, as a user and group that are not root's (fsGroup is the volume's group), indented
// for a pod spec whose fields start at column len(in).
func podSecurity(in string) string {
	return "\n" + in + "securityContext: {runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000, seccompProfile: {type: RuntimeDefault}}"
}

// containerSecurity is a container's securityContext under the restricted level, indented for a
// container whose fields start at column len(in).
func containerSecurity(in string) string {
	return "\n" + in + "securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}"
}

// hostVolumes is where node keeps its local volumes on its host.
func hostVolumes(node string) string {
	if node == "h4" {
		return h4Volumes
	}
	return paths.VolumesDir
}

// checkLocalStorage: the default StorageClass gives a StatefulSet's two claims directories on
// the nodes their pods run on (h3, and h4 in its --local-storage-dir); data survives the pod's deletion and a restart of its
// node; a pod's user writes, another pod's user and the host's other users cannot read; deleting
// a claim of the default class removes its directory. It returns the host path of a Retain
// volume left on h3 (its claim deleted), for h3's reset to keep.
func checkLocalStorage(t *testing.T, from string) (retainDir string) {
	class := mustKc(t, from, "get", "storageclass", "-o", `jsonpath={range .items[*]}{.metadata.name}={.metadata.annotations.storageclass\.kubernetes\.io/is-default-class} {end}`)
	if !strings.Contains(class, "local-path=true") {
		t.Fatalf("no default StorageClass local-path: %s", class)
	}
	applyOn(t, from, `apiVersion: v1
kind: Namespace
metadata:
  name: st
  labels: {pod-security.kubernetes.io/enforce: restricted}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: st}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [h3, h4]}]}]
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: db}}}`+podSecurity("      ")+`
      containers:
      - name: c
        image: `+busybox+`
        command: [sleep, "3600"]`+containerSecurity("        ")+`
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 100Mi}}`)
	mustKc(t, from, "-n", "st", "rollout", "status", "statefulset/db", "--timeout=300s")

	// Each claim is bound to a volume on its pod's node, in that node's volumes directory.
	// dir: the volume inside the node (its PersistentVolume's path); host: on the node's host.
	type vol struct{ pod, node, pv, dir, host string }
	vols := map[string]vol{}
	for _, i := range []string{"0", "1"} {
		pod := "db-" + i
		node := strings.TrimSpace(mustKc(t, from, "-n", "st", "get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"))
		pv := strings.TrimSpace(mustKc(t, from, "-n", "st", "get", "pvc", "data-"+pod, "-o", "jsonpath={.spec.volumeName}"))
		got := mustKc(t, from, "get", "pv", pv, "-o", `jsonpath={.metadata.annotations.local\.u7s\.io/node} {.spec.local.path} {.spec.storageClassName}`)
		dir := paths.VolumesDir + "/" + pv
		if got != node+" "+dir+" local-path" {
			t.Errorf("claim data-%s (pod on %s): volume %s is %q, want %q", pod, node, pv, got, node+" "+dir+" local-path")
		}
		vols[node] = vol{pod: pod, node: node, pv: pv, dir: dir, host: hostVolumes(node) + "/" + pv}
	}
	if len(vols) != 2 {
		t.Fatalf("the two replicas are not on two nodes: %v", vols)
	}
	w := vols["h4"]

	// The pod's user writes; the directory is the pod's user's and group's only.
	mustKc(t, from, "-n", "st", "exec", w.pod, "--", "sh", "-c", "id -u >/data/owner && echo kept-across-restarts >/data/f")
	if mode := strings.TrimSpace(mustOnHost(t, "h4", "stat -c '%a %u' "+w.host+" "+h4Volumes+" | tr '\\n' ' '")); !strings.HasPrefix(mode, "2770 ") || !strings.Contains(mode, " 700 ") {
		t.Errorf("modes of the volume and the volumes directory on h4's host: %q, want 2770 (the pod's user and fsGroup) and 700", mode)
	}
	if out := mustOnHost(t, "h4", "cat "+w.host+"/f"); !strings.Contains(out, "kept-across-restarts") {
		t.Errorf("the volume is not in h4's --local-storage-dir %s: %q", h4Volumes, out)
	}
	// Another user of the host cannot reach it.
	if out, err := onHost(t, "h4", "setpriv --reuid=65534 --regid=65534 --clear-groups cat "+w.host+"/f"); err == nil {
		t.Errorf("the host's user nobody read a pod's volume: %s", out)
	}
	// Another pod's user on the same node, even given the host path (a privileged namespace's
	// hostPath), cannot read it.
	applyOn(t, from, `apiVersion: v1
kind: Namespace
metadata:
  name: st-spy
  labels: {pod-security.kubernetes.io/enforce: privileged}
---
apiVersion: v1
kind: Pod
metadata: {name: spy, namespace: st-spy}
spec:
  nodeName: h4
  securityContext: {runAsUser: 3000, runAsGroup: 3000}
  containers:
  - {name: c, image: `+busybox+`, command: [sleep, "3600"], volumeMounts: [{name: v, mountPath: /v}, {name: all, mountPath: /all}]}
  volumes:
  - {name: v, hostPath: {path: `+w.dir+`}}
  - {name: all, hostPath: {path: `+paths.VolumesDir+`}}`)
	mustKc(t, from, "-n", "st-spy", "wait", "--for=condition=Ready", "pod/spy", "--timeout=180s")
	for _, c := range []string{"cat /v/f", "ls /all"} {
		if out, err := kc(t, from, "-n", "st-spy", "exec", "spy", "--", "sh", "-c", c); err == nil {
			t.Errorf("another pod's user ran %q on a volume's host path: %s", c, out)
		}
	}
	mustKc(t, from, "delete", "namespace", "st-spy", "--wait=false")

	// The data outlives the pod, and a restart of its node.
	mustKc(t, from, "-n", "st", "delete", "pod", w.pod)
	mustKc(t, from, "-n", "st", "rollout", "status", "statefulset/db", "--timeout=300s")
	if out := mustKc(t, from, "-n", "st", "exec", w.pod, "--", "cat", "/data/f", "/data/owner"); !strings.Contains(out, "kept-across-restarts") || !strings.Contains(out, "1000") {
		t.Errorf("after the pod's deletion its volume holds %q", out)
	}
	mustOnHost(t, "h4", "systemctl restart u7s")
	nodesReady(t, from, 3*time.Minute, "h4")
	eventually(t, w.pod+" runs again after h4's restart", 3*time.Minute, func() error {
		out, err := kc(t, from, "-n", "st", "exec", w.pod, "--", "cat", "/data/f")
		if err != nil || !strings.Contains(out, "kept-across-restarts") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})

	// Deleting a claim of the default class (reclaim policy Delete) removes its directory.
	mustKc(t, from, "-n", "st", "delete", "statefulset", "db")
	mustKc(t, from, "-n", "st", "wait", "--for=delete", "pod/db-0", "pod/db-1", "--timeout=180s")
	mustKc(t, from, "-n", "st", "delete", "pvc", "data-db-0", "data-db-1")
	for _, v := range vols {
		eventually(t, "volume "+v.pv+" removed from "+v.node, 2*time.Minute, func() error {
			if out, err := onHost(t, v.node, "ls -d "+v.host+" 2>&1"); err == nil {
				return fmt.Errorf("still there: %s", out)
			}
			if out, err := kc(t, from, "get", "pv", v.pv); err == nil {
				return fmt.Errorf("PersistentVolume still there: %s", out)
			}
			return nil
		})
	}

	// A Retain claim's directory outlives the claim.
	applyOn(t, from, `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local-retain}
provisioner: u7s.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Retain
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: keep, namespace: st}
spec:
  storageClassName: local-retain
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: keep, namespace: st}
spec:
  # Through the scheduler (not nodeName), which picks the node of a WaitForFirstConsumer claim.
  nodeSelector: {kubernetes.io/hostname: h3}
  tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]`+podSecurity("  ")+`
  containers:
  - name: c
    image: `+busybox+`
    command: [sh, -c, "echo retained >/data/f && sleep 3600"]`+containerSecurity("    ")+`
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: keep}}]`)
	mustKc(t, from, "-n", "st", "wait", "--for=condition=Ready", "pod/keep", "--timeout=180s")
	pv := strings.TrimSpace(mustKc(t, from, "-n", "st", "get", "pvc", "keep", "-o", "jsonpath={.spec.volumeName}"))
	mustKc(t, from, "delete", "namespace", "st")
	eventually(t, "the Retain volume released", 2*time.Minute, func() error {
		out, err := kc(t, from, "get", "pv", pv, "-o", "jsonpath={.status.phase}")
		if err != nil || strings.TrimSpace(out) != "Released" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	dir := paths.VolumesDir + "/" + pv
	if out := mustOnHost(t, "h3", "cat "+dir+"/f"); !strings.Contains(out, "retained") {
		t.Errorf("the Retain volume on h3 holds %q", out)
	}
	mustKc(t, from, "delete", "pv/"+pv, "storageclass/local-retain")
	return dir
}

// checkMetrics: the Metrics API lists every node and running pods, and a HorizontalPodAutoscaler
// on CPU scales a Deployment up under load and down after it.
func checkMetrics(t *testing.T, from string, nodes ...string) {
	eventually(t, "kubectl top nodes lists every node", 3*time.Minute, func() error {
		out, err := kc(t, from, "top", "nodes", "--no-headers")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		for _, n := range nodes {
			if !strings.Contains("\n"+out, "\n"+n+" ") {
				return fmt.Errorf("no %s in:\n%s", n, out)
			}
		}
		return nil
	})
	if out := mustKc(t, from, "top", "pods", "-A", "--no-headers"); !strings.Contains(out, "kube-apiserver-h1") {
		t.Errorf("kubectl top pods -A lacks the API server:\n%s", out)
	}
	// Load that stops when told: each pod burns its CPU limit (100m, five times its request)
	// until /tmp/stop exists.
	applyOn(t, from, `apiVersion: v1
kind: Namespace
metadata: {name: hpa}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: burn, namespace: hpa}
spec:
  replicas: 1
  selector: {matchLabels: {app: burn}}
  template:
    metadata: {labels: {app: burn}}
    spec:
      nodeSelector: {kubernetes.io/hostname: h4}
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: `+busybox+`
        command: [sh, -c, "while [ ! -e /tmp/stop ]; do :; done; exec sleep 3600"]
        resources: {requests: {cpu: 20m}, limits: {cpu: 100m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burn, namespace: hpa}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 100, periodSeconds: 15}]`)
	replicas := func(want string) func() error {
		return func() error {
			out, err := kc(t, from, "-n", "hpa", "get", "deployment", "burn", "-o", "jsonpath={.spec.replicas}")
			if err != nil || strings.TrimSpace(out) != want {
				hpa, _ := kc(t, from, "-n", "hpa", "get", "hpa", "burn", "--no-headers")
				return fmt.Errorf("%v: replicas %s (hpa: %s)", err, out, strings.TrimSpace(hpa))
			}
			return nil
		}
	}
	eventually(t, "the autoscaler scales burn up to 3 under load", 5*time.Minute, replicas("3"))
	mustKc(t, from, "-n", "hpa", "rollout", "status", "deployment/burn", "--timeout=180s")
	pods := mustKc(t, from, "-n", "hpa", "get", "pods", "-l", "app=burn", "-o", "jsonpath={.items[*].metadata.name}")
	for _, p := range strings.Fields(pods) {
		mustKc(t, from, "-n", "hpa", "exec", p, "--", "touch", "/tmp/stop")
	}
	eventually(t, "the autoscaler scales burn down to 1 without load", 5*time.Minute, replicas("1"))
	mustKc(t, from, "delete", "namespace", "hpa", "--wait=false")
}
