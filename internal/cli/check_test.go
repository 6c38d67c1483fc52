package cli

import (
	"testing"
)

func TestCheckCISFlags(t *testing.T) {
	c := newCheckCommand()
	cisCmd, _, err := c.Find([]string{"cis"})
	if err != nil || cisCmd.Name() != "cis" {
		t.Fatalf("no check cis: %v", err)
	}
	for flag, def := range map[string]string{"kube-bench": "/usr/libexec/u7s/bin/kube-bench", "config-dir": "/usr/share/u7s/kube-bench/cfg", "json": "false"} {
		f := cisCmd.Flags().Lookup(flag)
		if f == nil || f.DefValue != def {
			t.Errorf("--%s: %+v, want default %s", flag, f, def)
		}
	}
	if f := cisCmd.Flags().Lookup(inNodeFlag); f == nil || !f.Hidden {
		t.Errorf("--%s is not a hidden flag", inNodeFlag)
	}
}
