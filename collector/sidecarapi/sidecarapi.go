// Package sidecarapi is the contract between the python extension, which runs
// or reaches the spancost sidecar, and the components that use it (the python
// processor): what they may ask of the sidecar and the errors they may tell
// apart. It holds no implementation, so a component depends on the contract,
// not on the extension's internals.
package sidecarapi // import "github.com/spancost/spancost/collector/sidecarapi"

import (
	"context"
	"errors"

	"github.com/spancost/spancost/collector/internal/wirepb"
)

// Sidecar is what the python extension offers to the components that name it.
type Sidecar interface {
	// Register validates a plugin configuration in the sidecar and keeps it,
	// so that a restarted sidecar is configured again before it gets batches.
	// It returns what the plugin owns (nil: nothing), or ErrPluginNotFound or
	// ErrPluginConfig for a wrong plugin or configuration.
	Register(ctx context.Context, instance, plugin, configJSON string) (*wirepb.Ownership, error)
	// Unregister forgets an instance registered before.
	Unregister(instance string)
	// ProcessTraces hands one serialized ExportTraceServiceRequest to the
	// instance's plugin. A sidecar that no longer knows the instance (it was
	// restarted behind the collector's back) is configured again and asked once more.
	ProcessTraces(ctx context.Context, instance string, traces []byte) (*wirepb.ProcessTracesResponse, error)
}

var (
	// ErrPluginNotFound: the sidecar has no plugin of that name installed.
	ErrPluginNotFound = errors.New("plugin not found")
	// ErrPluginConfig: the plugin rejected its configuration.
	ErrPluginConfig = errors.New("invalid plugin configuration")
)
