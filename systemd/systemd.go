// Package systemd holds u7s's systemd units, embedded in the binary: init and join install
// them where the distribution's package did not.
package systemd

import _ "embed"

// Unit is the name of the node's service.
const Unit = "u7s.service"

// UnitFile is systemd/u7s.service.
//
//go:embed u7s.service
var UnitFile []byte
