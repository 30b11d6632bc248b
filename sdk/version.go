package sdk

import (
	plugin "github.com/hashicorp/go-plugin"
)

// ProtocolVersion is the current wire major: the berth.*.v1 proto packages.
const ProtocolVersion = 1

// SupportedProtocolVersions are the majors this SDK can serve and speak,
// newest first. When v2 exists this becomes {2, 1}.
var SupportedProtocolVersions = []int{ProtocolVersion}

// Version is the SDK's own semantic version, reported in Info.
const Version = "0.1.0"

// Handshake is the go-plugin handshake shared by the host and every plugin.
// The magic cookie is a usability check (a plugin run by hand says it must be
// started by Berth), not a security feature.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "BERTH_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "9c1f2a6e-berth-plugin",
}
