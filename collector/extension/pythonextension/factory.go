package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
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
		Restart: RestartConfig{
			InitialInterval: 100 * time.Millisecond,
			MaxInterval:     10 * time.Second,
		},
		ShutdownGracePeriod: 10 * time.Second,
		MaxMessageBytes:     64 << 20,
		StatsInterval:       10 * time.Second,
	}
}

func create(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newExtension(cfg.(*Config), set)
}
