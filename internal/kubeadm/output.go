package kubeadm

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	"k8s.io/kubernetes/cmd/kubeadm/app/util/pubkeypin"

	"github.com/u7s/u7s/internal/paths"
)

// noise are kubeadm's lines that mean nothing on a u7s node: u7s, not systemd, runs the kubelet.
var noise = []string{
	"kubelet service is not enabled",
	"unable to stop the kubelet service",
	"unable to start the kubelet service",
	"unable to restart the kubelet service",
	"Please ensure kubelet is reloaded and running manually",
	"couldn't get kubelet version",
	// kube-proxy binds IPv4 only: the namespace has no IPv6.
	`The recommended value for "bindAddress"`,
}

// farewells start kubeadm's closing advice (kubeconfig for a regular user, a pod network to
// deploy, kubeadm join commands): u7s has done or prints all of it itself.
var farewells = []string{
	"Your Kubernetes control-plane has initialized successfully!",
	"This node has joined the cluster:",
	"This node has joined the cluster and a new control plane instance was created:",
}

// OutputFilter passes kubeadm's output through line by line, dropping the noise and the
// farewell, and turning the commands it suggests into u7s's.
type OutputFilter struct {
	mu    sync.Mutex
	out   io.Writer
	buf   bytes.Buffer
	quiet bool
}

// NewOutputFilter writes the filtered output to out.
func NewOutputFilter(out io.Writer) *OutputFilter { return &OutputFilter{out: out} }

func (f *OutputFilter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buf.Write(p)
	for {
		line, err := f.buf.ReadString('\n')
		if err != nil {
			f.buf.WriteString(line) // incomplete: keep for the next write
			return len(p), nil
		}
		f.line(line)
	}
}

func (f *OutputFilter) line(l string) {
	for _, s := range farewells {
		if strings.Contains(l, s) {
			f.quiet = true
		}
	}
	if f.quiet {
		return
	}
	for _, s := range noise {
		if strings.Contains(l, s) {
			return
		}
	}
	fmt.Fprint(f.out, RewriteCommands(l))
}

// Flush writes out what is left without a newline.
func (f *OutputFilter) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buf.Len() > 0 {
		f.line(f.buf.String() + "\n")
		f.buf.Reset()
	}
}

// RewriteCommands turns the kubeadm commands kubeadm suggests into the u7s commands that do
// the same on a u7s node (there is no kubeadm binary on the host).
func RewriteCommands(s string) string {
	for _, c := range []string{"join", "reset", "token", "init phase upload-certs", "upgrade"} {
		s = strings.ReplaceAll(s, "kubeadm "+c, "u7s "+c)
	}
	return s
}

// NewToken makes a bootstrap token.
func NewToken() (string, error) { return bootstraputil.GenerateBootstrapToken() }

// CACertHash is the --discovery-token-ca-cert-hash of the cluster CA on this control plane.
func CACertHash() (string, error) {
	f := paths.KubernetesDir + "/pki/ca.crt"
	b, err := os.ReadFile(f)
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", fmt.Errorf("%s: no PEM certificate", f)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", fmt.Errorf("%s: %w", f, err)
	}
	return pubkeypin.Hash(c), nil
}
