package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/u7s/u7s/internal/signing"
)

func runCommand(cmd *cobra.Command, args ...string) (string, error) {
	var out bytes.Buffer
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	err := cmd.Execute()
	return out.String(), err
}

func TestImagesKeygenCommand(t *testing.T) {
	t.Setenv(signing.PassphraseEnv, "")
	dir := filepath.Join(t.TempDir(), "keys")
	out, err := runCommand(newImagesKeygenCommand(), "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub := filepath.Join(dir, signing.PrivateKeyFile), filepath.Join(dir, signing.PublicKeyFile)
	for _, want := range []string{priv, pub, "--image-signing-key " + pub, "--sign-key " + priv, "no passphrase"} {
		if !strings.Contains(out, want) {
			t.Errorf("keygen output does not contain %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(priv); err != nil {
		t.Error(err)
	}
	if _, err := runCommand(newImagesKeygenCommand(), "--dir", dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second keygen: %v, want 'already exists'", err)
	}

	// A wrong passphrase is found before anything is built or pushed.
	t.Setenv(signing.PassphraseEnv, "not it")
	bin := t.TempDir()
	for _, tt := range []struct {
		cmd     *cobra.Command
		args    []string
		wantErr string
	}{
		{newImagesBuildCommand(), []string{"--bin-dir", bin, "--registry", "registry.local/k8s-p10", "--oci-dir", t.TempDir(), "--sign-key", priv}, "give --push too"},
		{newImagesBuildCommand(), []string{"--bin-dir", bin, "--registry", "registry.local/k8s-p10", "--push", "--sign-key", priv}, signing.PassphraseEnv},
		{newImagesLoadCommand(), []string{filepath.Join(bin, "none.tar"), "--sign-key", priv}, signing.PassphraseEnv},
		{newImagesSignCommand(), []string{"registry.local/k8s-p10/pause:3.10.1"}, "no --sign-key"},
		{newImagesSignCommand(), []string{"--sign-key", priv, "pause:3.10.1"}, "pause:3.10.1"},
	} {
		if _, err := runCommand(tt.cmd, tt.args...); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s %v: %v, want an error with %q", tt.cmd.Name(), tt.args, err, tt.wantErr)
		}
	}
}
