package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/extension"

	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadata"
)

// NewFactory creates the factory of the python extension.
func NewFactory() extension.Factory {
	return extension.NewFactory(metadata.Type, createDefaultConfig, create, metadata.ExtensionStability)
}

func createDefaultConfig() component.Config {
	return &Config{
		StartupTimeout: 20 * time.Second,
		HealthCheck: HealthCheckConfig{
			Interval:         time.Second,
			Timeout:          time.Second,
			FailureThreshold: 5,
		},
		Restart: configretry.BackOffConfig{
			Enabled:             true,
			InitialInterval:     100 * time.Millisecond,
			RandomizationFactor: 0.5,
			Multiplier:          1.5,
			MaxInterval:         10 * time.Second,
			MaxElapsedTime:      0, // a sidecar is worth restarting for as long as the collector runs
		},
		ShutdownGracePeriod: 10 * time.Second,
		MaxMessageBytes:     64 << 20,
		StatsInterval:       10 * time.Second,
	}
}

func create(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newExtension(cfg.(*Config), set)
}
