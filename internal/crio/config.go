// Package crio configures and runs cri-o inside the node's namespace: rootless, cgroupfs,
// the pinned runc, native overlay, every socket and state dir under u7s-admin's directories.
package crio

import (
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/u7s/u7s/internal/cgroups"
	"github.com/u7s/u7s/internal/config"
	"github.com/u7s/u7s/internal/paths"
)

// Config mirrors the parts of cri-o's crio.conf (TOML) that u7s sets.
type Config struct {
	Crio Crio `toml:"crio"`
}

type Crio struct {
	Root               string  `toml:"root"`
	RunRoot            string  `toml:"runroot"`
	StorageDriver      string  `toml:"storage_driver"`
	LogDir             string  `toml:"log_dir"`
	VersionFile        string  `toml:"version_file"`
	VersionFilePersist string  `toml:"version_file_persist"`
	CleanShutdownFile  string  `toml:"clean_shutdown_file"`
	InternalWipe       bool    `toml:"internal_wipe"`
	API                API     `toml:"api"`
	Runtime            Runtime `toml:"runtime"`
	Image              Image   `toml:"image"`
	Network            Network `toml:"network"`
	Metrics            Metrics `toml:"metrics"`
	NRI                NRI     `toml:"nri"`
}

// NRI plugins are not used by a u7s node; off, cri-o opens no socket for them.
type NRI struct {
	Enable bool `toml:"enable_nri"`
}

type API struct {
	Listen string `toml:"listen"`
}

type Runtime struct {
	DefaultRuntime           string                  `toml:"default_runtime"`
	CgroupManager            string                  `toml:"cgroup_manager"`
	ConmonCgroup             string                  `toml:"conmon_cgroup,omitempty"`
	DropInfraCtr             bool                    `toml:"drop_infra_ctr"`
	PinnsPath                string                  `toml:"pinns_path"`
	NamespacesDir            string                  `toml:"namespaces_dir"`
	ContainerExitsDir        string                  `toml:"container_exits_dir"`
	ContainerAttachSocketDir string                  `toml:"container_attach_socket_dir"`
	SELinux                  bool                    `toml:"selinux"`
	ApparmorProfile          string                  `toml:"apparmor_profile,omitempty"`
	LogToJournald            bool                    `toml:"log_to_journald"`
	Runtimes                 map[string]RuntimeEntry `toml:"runtimes"`
}

type RuntimeEntry struct {
	RuntimePath string   `toml:"runtime_path"`
	RuntimeRoot string   `toml:"runtime_root"`
	RuntimeType string   `toml:"runtime_type"`
	MonitorPath string   `toml:"monitor_path"`
	MonitorCgrp string   `toml:"monitor_cgroup,omitempty"`
	MonitorEnv  []string `toml:"monitor_env,omitempty"`
}

type Image struct {
	PauseImage      string `toml:"pause_image"`
	SignaturePolicy string `toml:"signature_policy"`
	GlobalAuthFile  string `toml:"global_auth_file,omitempty"`
	ImageVolumes    string `toml:"image_volumes"`
	ShortNameMode   string `toml:"short_name_mode,omitempty"`
}

type Network struct {
	NetworkDir string   `toml:"network_dir"`
	PluginDirs []string `toml:"plugin_dirs"`
}

type Metrics struct {
	EnableMetrics bool `toml:"enable_metrics"`
}

// Dirs are cri-o's files, derived from the node's state and runtime directories.
type Dirs struct {
	State string // persistent: storage, version files
	Run   string // volatile: sockets, exits, runc state
}

// DefaultDirs are the FHS locations of package paths.
func DefaultDirs() Dirs {
	return Dirs{State: filepath.Join(paths.State, "crio"), Run: filepath.Join(paths.RunDir, "crio")}
}

func (d Dirs) ConfigFile() string     { return filepath.Join(d.State, "crio.conf") }
func (d Dirs) RegistriesFile() string { return filepath.Join(d.State, "registries.conf") }
func (d Dirs) PolicyFile() string     { return filepath.Join(d.State, "policy.json") }
func (d Dirs) StorageFile() string    { return filepath.Join(d.State, "storage.conf") }
func (d Dirs) StorageRoot() string    { return filepath.Join(d.State, "storage") }
func (d Dirs) StorageRunRoot() string { return filepath.Join(d.Run, "storage") }
func (d Dirs) Socket() string         { return filepath.Join(d.Run, "crio.sock") }

// CNIConfDir is where flannel's install-cni init container writes the CNI configuration,
// as seen inside the namespace.
const CNIConfDir = "/etc/cni/net.d"

// New returns the cri-o configuration of a node.
func New(n *config.Node, d Dirs) Config {
	rt := Runtime{
		DefaultRuntime: "runc",
		CgroupManager:  "cgroupfs",
		// With cgroupfs conmon must live in the pod's cgroup.
		ConmonCgroup: "pod",
		DropInfraCtr: cgroups.Must(n.Cgroup).DropInfraContainer(),
		// Loading cri-o's default AppArmor profile takes CAP_MAC_ADMIN of the host, which the
		// namespace has not: on a host with AppArmor (Debian, Ubuntu) cri-o would fail to start.
		ApparmorProfile:          "unconfined",
		PinnsPath:                filepath.Join(paths.NodeBin, "pinns"),
		NamespacesDir:            filepath.Join(d.Run, "ns"),
		ContainerExitsDir:        filepath.Join(d.Run, "exits"),
		ContainerAttachSocketDir: filepath.Join(d.Run, "attach"),
		Runtimes: map[string]RuntimeEntry{
			"runc": {
				// runc behind u7s's oom_score_adj clamp (package ociruntime).
				RuntimePath: filepath.Join(paths.LibexecBin, "u7s-runc"),
				RuntimeRoot: filepath.Join(d.Run, "runc"),
				RuntimeType: "oci",
				MonitorPath: "/usr/bin/conmon",
			},
		},
	}
	return Config{Crio: Crio{
		Root:               d.StorageRoot(),
		RunRoot:            d.StorageRunRoot(),
		StorageDriver:      "overlay",
		LogDir:             filepath.Join(paths.LogDir, "crio-pods"),
		VersionFile:        filepath.Join(d.Run, "version"),
		VersionFilePersist: filepath.Join(d.State, "version"),
		CleanShutdownFile:  filepath.Join(d.State, "clean.shutdown"),
		API:                API{Listen: d.Socket()},
		Runtime:            rt,
		Image: Image{
			PauseImage:      n.PauseImage,
			SignaturePolicy: d.PolicyFile(),
			ImageVolumes:    "mkdir",
			ShortNameMode:   "disabled",
		},
		Network: Network{NetworkDir: CNIConfDir, PluginDirs: []string{paths.CNIBin}},
	}}
}

// Marshal encodes the configuration as crio.conf TOML.
func (c Config) Marshal() ([]byte, error) { return toml.Marshal(c) }

// Registries mirrors containers-registries.conf(5) v2.
type Registries struct {
	UnqualifiedSearchRegistries []string   `toml:"unqualified-search-registries"`
	ShortNameMode               string     `toml:"short-name-mode"`
	Registry                    []Registry `toml:"registry"`
}

type Registry struct {
	Prefix   string `toml:"prefix,omitempty"`
	Location string `toml:"location"`
	Insecure bool   `toml:"insecure"`
}

// NewRegistries allows plain HTTP only for the given registries (registry.local). A plain-HTTP
// registry without a port is reached at port 80 directly: containers/image tries HTTPS first,
// and from inside slirp4netns a connection to a closed port 443 hangs instead of being refused.
func NewRegistries(insecure []string) Registries {
	r := Registries{UnqualifiedSearchRegistries: []string{}, ShortNameMode: "disabled"}
	for _, loc := range insecure {
		reg := Registry{Location: loc, Insecure: true}
		if !strings.Contains(loc, ":") && !strings.Contains(loc, "/") {
			reg.Prefix, reg.Location = loc, loc+":80"
		}
		r.Registry = append(r.Registry, reg)
	}
	return r
}

// Storage mirrors containers-storage.conf(5): native overlay (kernel >= 5.11 in a user
// namespace), so no fuse-overlayfs is needed.
type Storage struct {
	Storage StorageSection `toml:"storage"`
}

type StorageSection struct {
	Driver  string `toml:"driver"`
	RunRoot string `toml:"runroot"`
	Root    string `toml:"graphroot"`
}

func NewStorage(d Dirs) Storage {
	return Storage{Storage: StorageSection{Driver: "overlay", RunRoot: d.StorageRunRoot(), Root: d.StorageRoot()}}
}

// Policy is the containers-policy.json(5) of a node given no signing key: images come from
// the registries the admin chose, unverified (NodePolicy).
const Policy = `{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker-daemon":{"":[{"type":"insecureAcceptAnything"}]}}}` + "\n"
