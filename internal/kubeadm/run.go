package kubeadm

import (
	"flag"
	"io"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/klog/v2"
	kubeadmcmd "k8s.io/kubernetes/cmd/kubeadm/app/cmd"
)

// Run executes kubeadm's own command tree in this process with args (e.g. "init",
// "--config", file), as the kubeadm binary would, with its -v flag.
func Run(args []string, in io.Reader, out, errOut io.Writer) error {
	var klogFlags flag.FlagSet
	klog.InitFlags(&klogFlags)
	cmd := kubeadmcmd.NewKubeadmCommand(in, out, errOut)
	fs := pflag.NewFlagSet("klog", pflag.ContinueOnError)
	klogFlags.VisitAll(func(f *flag.Flag) {
		if f.Name == "v" || f.Name == "vmodule" {
			fs.AddGoFlag(f)
		}
	})
	cmd.PersistentFlags().AddFlagSet(fs)
	cmd.SetGlobalNormalizationFunc(cliflag.WordSepNormalizeFunc)
	cmd.SetArgs(args)
	return cmd.Execute()
}
