package pythonprocessor

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/spancost/spancost/collector/processor/pythonprocessor/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()

	tests := []struct {
		id           component.ID
		expected     component.Config
		expectedJSON string
	}{
		{
			id: component.NewID(metadata.Type),
			expected: &Config{
				Extension:       component.MustNewID("python"),
				Plugin:          "spancost.environment",
				Timeout:         250 * time.Millisecond,
				OnError:         OnErrorPass,
				MaxRequestBytes: 4 << 20,
			},
			expectedJSON: "{}",
		},
		{
			id: component.NewIDWithName(metadata.Type, "cost"),
			expected: &Config{
				Extension: component.MustNewIDWithName("python", "sidecar"),
				Plugin:    "spancost.cost",
				PluginConfig: map[string]any{
					"currency": "USD",
					"prices": map[string]any{
						"aws_pricelist": map[string]any{"enabled": true, "refresh": "15m"},
					},
					"regions": []any{"eu-west-1", "us-east-1"},
				},
				Timeout:         2 * time.Second,
				OnError:         OnErrorReject,
				MaxRequestBytes: 1 << 20,
			},
			expectedJSON: `{"currency":"USD","prices":{"aws_pricelist":{"enabled":true,"refresh":"15m"}},"regions":["eu-west-1","us-east-1"]}`,
		},
		{
			id: component.NewIDWithName(metadata.Type, "own_plugin"),
			expected: &Config{
				Extension:       component.MustNewID("python"),
				Plugin:          "my_company.redactor",
				Timeout:         time.Minute,
				OnError:         OnErrorPass,
				MaxRequestBytes: 4 << 20,
			},
			expectedJSON: "{}",
		},
	}

	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			t.Parallel()
			cfg := loadConfig(t, tt.id)
			require.NoError(t, confmap.Validate(cfg))
			assert.Equal(t, tt.expected, cfg)
			configJSON, err := cfg.pluginConfigJSON()
			require.NoError(t, err)
			assert.JSONEq(t, tt.expectedJSON, configJSON)
		})
	}
}

func TestLoadInvalidConfig(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		wantErr string
	}{
		{
			name:    "missing_plugin",
			wantErr: "plugin: must be set, e.g. spancost.environment",
		},
		{
			name:    "bad_plugin_name",
			wantErr: `plugin: "spancost environment!" is not a plugin entry-point name`,
		},
		{
			name:    "module_attribute",
			wantErr: `plugin: "my_company.plugins:Redactor" is not a plugin entry-point name`,
		},
		{
			name:    "zero_timeout",
			wantErr: "timeout: must be positive and at most 1m0s, got 0s",
		},
		{
			name:    "long_timeout",
			wantErr: "timeout: must be positive and at most 1m0s, got 2m0s",
		},
		{
			name:    "drop",
			wantErr: `on_error: must be "pass" or "reject", got "drop"`,
		},
		{
			name:    "small_requests",
			wantErr: "max_request_bytes: must be at least 16384, got 1024",
		},
		{
			name:    "nan_config",
			wantErr: "config: cannot be encoded as JSON for the plugin: json: unsupported value: NaN",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := loadConfig(t, component.NewIDWithName(metadata.Type, tt.name))
			assert.EqualError(t, confmap.Validate(cfg), tt.wantErr)
		})
	}
}

func loadConfig(t *testing.T, id component.ID) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	cfg := NewFactory().CreateDefaultConfig()
	sub, err := cm.Sub(id.String())
	require.NoError(t, err)
	require.NoError(t, sub.Unmarshal(cfg))
	return cfg.(*Config)
}
