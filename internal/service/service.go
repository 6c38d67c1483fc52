// Package service runs the node as the systemd service u7s.service where systemd is PID 1, and
// a control plane's snapshot timer: installs the units (unless a package did), enables,
// starts, stops and removes them, through systemd's D-Bus API.
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

// PackagedUnit is where a distribution package puts a unit.
func PackagedUnit(u systemd.Unit) string { return filepath.Join("/usr/lib/systemd/system", u.Name) }

// LocalUnit is where init and join write a unit when no package did.
func LocalUnit(u systemd.Unit) string { return filepath.Join("/etc/systemd/system", u.Name) }

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

// Install writes each unit to LocalUnit unless the package installed it, reloads systemd and
// enables the last one (the node's service, or the timer that starts the others), so that it
// starts at boot.
func Install(ctx context.Context, units ...systemd.Unit) error {
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, u := range units {
		if _, err := os.Stat(PackagedUnit(u)); err != nil {
			if err := fsutil.WriteFileAtomic(LocalUnit(u), u.File, 0o644); err != nil {
				return err
			}
		}
	}
	if err := c.ReloadContext(ctx); err != nil {
		return fmt.Errorf("systemctl daemon-reload: %w", err)
	}
	last := units[len(units)-1].Name
	if _, _, err := c.EnableUnitFilesContext(ctx, []string{last}, false, true); err != nil {
		return fmt.Errorf("enabling %s: %w", last, err)
	}
	return nil
}

// Start starts the unit and waits for its start job: with Type=notify that is when the
// supervisor says READY=1 (cri-o answers inside the namespace), or when it fails.
func Start(ctx context.Context, u systemd.Unit) error {
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.ResetFailedUnitContext(ctx, u.Name)
	ch := make(chan string, 1)
	if _, err := c.StartUnitContext(ctx, u.Name, "replace", ch); err != nil {
		return fmt.Errorf("starting %s: %w", u.Name, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("starting %s: %s: see journalctl -u %s and /var/log/u7s", u.Name, res, u.Name)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("starting %s: %w", u.Name, ctx.Err())
	}
}

// Active reports whether the unit is active (running).
func Active(ctx context.Context, u systemd.Unit) bool {
	c, err := connect(ctx)
	if err != nil {
		return false
	}
	defer c.Close()
	p, err := c.GetUnitPropertyContext(ctx, u.Name, "ActiveState")
	return err == nil && p.Value.Value() == "active"
}

// MainPID is the unit's main process (the supervisor), or 0.
func MainPID(ctx context.Context, u systemd.Unit) int {
	c, err := connect(ctx)
	if err != nil {
		return 0
	}
	defer c.Close()
	p, err := c.GetServicePropertyContext(ctx, u.Name, "MainPID")
	if err != nil {
		return 0
	}
	v, _ := p.Value.Value().(uint32)
	return int(v)
}

// Stop stops the unit and waits for it.
func Stop(ctx context.Context, u systemd.Unit) error {
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if !unitKnown(ctx, c, u) { // a unit systemd does not know is not running
		return nil
	}
	ch := make(chan string, 1)
	if _, err := c.StopUnitContext(ctx, u.Name, "replace", ch); err != nil {
		return fmt.Errorf("stopping %s: %w", u.Name, err)
	}
	select {
	case <-ch:
		return nil
	case <-time.After(90 * time.Second):
		return fmt.Errorf("stopping %s: no end after 90s", u.Name)
	}
}

func unitKnown(ctx context.Context, c *sdbus.Conn, u systemd.Unit) bool {
	p, err := c.GetUnitPropertyContext(ctx, u.Name, "LoadState")
	return err == nil && p.Value.Value() == "loaded"
}

// Uninstall stops and disables each unit (a LocalUnit that init or join wrote is theirs to
// remove: host.RemoveRecorded).
func Uninstall(ctx context.Context, units ...systemd.Unit) error {
	if !Systemd() {
		return nil
	}
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var errs []error
	for _, u := range units {
		if err := Stop(ctx, u); err != nil {
			errs = append(errs, err)
		}
		if unitKnown(ctx, c, u) {
			if _, err := c.DisableUnitFilesContext(ctx, []string{u.Name}, false); err != nil {
				errs = append(errs, fmt.Errorf("disabling %s: %w", u.Name, err))
			}
		}
		_ = c.ResetFailedUnitContext(ctx, u.Name)
	}
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
