// Package service runs the node as the systemd service u7s.service where systemd is PID 1:
// installs the unit (unless a package did), enables, starts, stops and removes it, through
// systemd's D-Bus API.
package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/u7s/u7s/internal/fsutil"
	"github.com/u7s/u7s/systemd"
)

var (
	// PackagedUnit is where a distribution package puts the unit.
	PackagedUnit = filepath.Join("/usr/lib/systemd/system", systemd.Unit)
	// LocalUnit is where init and join write it when no package did.
	LocalUnit = filepath.Join("/etc/systemd/system", systemd.Unit)
)

// Systemd reports whether systemd is PID 1 (sd_booted's test).
func Systemd() bool {
	fi, err := os.Stat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

func connect(ctx context.Context) (*sdbus.Conn, error) {
	c, err := sdbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to systemd: %w", err)
	}
	return c, nil
}

// Install writes the unit to LocalUnit unless the package installed it, reloads systemd and
// enables the unit, so that the node starts at boot.
func Install(ctx context.Context) error {
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := os.Stat(PackagedUnit); err != nil {
		if err := fsutil.WriteFileAtomic(LocalUnit, systemd.UnitFile, 0o644); err != nil {
			return err
		}
	}
	if err := c.ReloadContext(ctx); err != nil {
		return fmt.Errorf("systemctl daemon-reload: %w", err)
	}
	if _, _, err := c.EnableUnitFilesContext(ctx, []string{systemd.Unit}, false, true); err != nil {
		return fmt.Errorf("enabling %s: %w", systemd.Unit, err)
	}
	return nil
}

// Start starts the unit and waits for its start job: with Type=notify that is when the
// supervisor says READY=1 (cri-o answers inside the namespace), or when it fails.
func Start(ctx context.Context) error {
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.ResetFailedUnitContext(ctx, systemd.Unit)
	ch := make(chan string, 1)
	if _, err := c.StartUnitContext(ctx, systemd.Unit, "replace", ch); err != nil {
		return fmt.Errorf("starting %s: %w", systemd.Unit, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("starting %s: %s: see journalctl -u %s and /var/log/u7s", systemd.Unit, res, systemd.Unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("starting %s: %w", systemd.Unit, ctx.Err())
	}
}

// Active reports whether the unit is active (running).
func Active(ctx context.Context) bool {
	c, err := connect(ctx)
	if err != nil {
		return false
	}
	defer c.Close()
	p, err := c.GetUnitPropertyContext(ctx, systemd.Unit, "ActiveState")
	return err == nil && p.Value.Value() == "active"
}

// MainPID is the unit's main process (the supervisor), or 0.
func MainPID(ctx context.Context) int {
	c, err := connect(ctx)
	if err != nil {
		return 0
	}
	defer c.Close()
	p, err := c.GetServicePropertyContext(ctx, systemd.Unit, "MainPID")
	if err != nil {
		return 0
	}
	v, _ := p.Value.Value().(uint32)
	return int(v)
}

// Stop stops the unit and waits for it.
func Stop(ctx context.Context) error {
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if !unitKnown(ctx, c) { // a unit systemd does not know is not running
		return nil
	}
	ch := make(chan string, 1)
	if _, err := c.StopUnitContext(ctx, systemd.Unit, "replace", ch); err != nil {
		return fmt.Errorf("stopping %s: %w", systemd.Unit, err)
	}
	select {
	case <-ch:
		return nil
	case <-time.After(90 * time.Second):
		return fmt.Errorf("stopping %s: no end after 90s", systemd.Unit)
	}
}

func unitKnown(ctx context.Context, c *sdbus.Conn) bool {
	p, err := c.GetUnitPropertyContext(ctx, systemd.Unit, "LoadState")
	return err == nil && p.Value.Value() == "loaded"
}

// Uninstall stops and disables the unit (a LocalUnit that init or join wrote is theirs to
// remove: host.RemoveRecorded).
func Uninstall(ctx context.Context) error {
	if !Systemd() {
		return nil
	}
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var errs []error
	if err := Stop(ctx); err != nil {
		errs = append(errs, err)
	}
	if unitKnown(ctx, c) {
		if _, err := c.DisableUnitFilesContext(ctx, []string{systemd.Unit}, false); err != nil {
			errs = append(errs, fmt.Errorf("disabling %s: %w", systemd.Unit, err))
		}
	}
	_ = c.ResetFailedUnitContext(ctx, systemd.Unit)
	if err := c.ReloadContext(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Reload makes systemd read its unit files again (after one was removed).
func Reload(ctx context.Context) error {
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.ReloadContext(ctx)
}
