package pythonextension

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadata"
)

// withDefaults is the default configuration changed by set.
func withDefaults(set func(*Config)) *Config {
	cfg := createDefaultConfig().(*Config)
	set(cfg)
	return cfg
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()

	tests := []struct {
		id       component.ID
		expected component.Config
	}{
		{
			id: component.NewID(metadata.Type),
			expected: withDefaults(func(cfg *Config) {
				cfg.Command = []string{"spancost", "sidecar"}
			}),
		},
		{
			id: component.NewIDWithName(metadata.Type, "full"),
			expected: &Config{
				Command:        []string{"/opt/spancost/bin/spancost", "sidecar", "--log-level", "debug"},
				Env:            map[string]string{"SPANCOST_DATABASE_URL": "postgresql://spancost@localhost/spancost"},
				WorkingDir:     "/var/lib/spancost",
				Endpoint:       "unix:///run/spancost/sidecar.sock",
				StartupTimeout: 30 * time.Second,
				HealthCheck: HealthCheckConfig{
					Interval:         2 * time.Second,
					Timeout:          500 * time.Millisecond,
					FailureThreshold: 3,
				},
				Restart: configretry.BackOffConfig{
					Enabled:             true,
					InitialInterval:     250 * time.Millisecond,
					RandomizationFactor: 0.5,
					Multiplier:          2,
					MaxInterval:         30 * time.Second,
					MaxElapsedTime:      10 * time.Minute,
				},
				ShutdownGracePeriod: 20 * time.Second,
				MaxMessageBytes:     16 << 20,
				StatsInterval:       15 * time.Second,
				Sinks:               map[string]SinkConfig{"totals": {Plugin: "spancost.totals"}},
			},
		},
		{
			id:       component.NewIDWithName(metadata.Type, "connect"),
			expected: withDefaults(func(cfg *Config) { cfg.Endpoint = "127.0.0.1:4390" }),
		},
		{
			id:       component.NewIDWithName(metadata.Type, "connect_localhost"),
			expected: withDefaults(func(cfg *Config) { cfg.Endpoint = "localhost:4390" }),
		},
		{
			id:       component.NewIDWithName(metadata.Type, "connect_ipv6"),
			expected: withDefaults(func(cfg *Config) { cfg.Endpoint = "[::1]:4390" }),
		},
		{
			id:       component.NewIDWithName(metadata.Type, "connect_unix"),
			expected: withDefaults(func(cfg *Config) { cfg.Endpoint = "unix:///run/spancost/sidecar.sock" }),
		},
		{
			id: component.NewIDWithName(metadata.Type, "sinks"),
			expected: withDefaults(func(cfg *Config) {
				cfg.Command = []string{"spancost", "sidecar"}
				cfg.Endpoint = "unix:///run/spancost/sidecar.sock"
				cfg.StatsInterval = 5 * time.Second
				cfg.Sinks = map[string]SinkConfig{"totals": {
					Plugin: "spancost.totals",
					Config: map[string]any{"database_url": "postgresql://spancost@db/spancost", "max_clock_skew": "2h"},
				}}
			}),
		},
	}

	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			t.Parallel()
			cfg := loadConfig(t, tt.id)
			require.NoError(t, confmap.Validate(cfg))
			assert.Equal(t, tt.expected, cfg)
		})
	}
}

func TestLoadInvalidConfig(t *testing.T) {
	t.Parallel()

	const notLoopback = "the sidecar must listen on a Unix socket or a loopback address (127.0.0.1, [::1], localhost)"
	tests := []struct {
		name    string
		wantErr string
	}{
		{
			name:    "empty",
			wantErr: "either command (spawn the sidecar) or endpoint (connect to a running sidecar) must be set",
		},
		{
			name:    "any_address",
			wantErr: `endpoint: "0.0.0.0:4390": ` + notLoopback,
		},
		{
			name:    "remote",
			wantErr: `endpoint: "10.1.2.3:80": ` + notLoopback,
		},
		{
			name:    "relative_socket",
			wantErr: `endpoint: "unix://sidecar.sock": a Unix socket path must be absolute (unix:///path/to/sidecar.sock)`,
		},
		{
			name:    "port_zero",
			wantErr: `endpoint: "127.0.0.1:0": a fixed port is required`,
		},
		{
			name:    "url",
			wantErr: `endpoint: "http://127.0.0.1:4390": use unix:///path or host:port`,
		},
		{
			name: "bad_durations",
			wantErr: "startup_timeout: must be positive, got 0s\n" +
				"health_check.interval: must be positive, got -1s\n" +
				"health_check.timeout: must be positive, got 0s\n" +
				"restart.initial_interval: must be positive, got 0s\n" +
				"restart.max_interval: must be positive, got -5s\n" +
				"shutdown_grace_period: must be positive, got 0s\n" +
				"restart: max_interval value must be greater than or equal to 0",
		},
		{
			name:    "no_failures",
			wantErr: "health_check.failure_threshold: must be at least 1, got 0",
		},
		{
			name:    "backwards_backoff",
			wantErr: "restart.max_interval: 1s is shorter than restart.initial_interval 5s",
		},
		{
			name: "shrinking_backoff",
			wantErr: "restart.multiplier: must be at least 1, got 0.5\n" +
				"restart: randomization_factor value must be less than or equal to 1",
		},
		{
			name:    "small_messages",
			wantErr: "max_message_bytes: must be at least 65536, got 1024",
		},
		{
			name:    "env_without_command",
			wantErr: "env: only applies when command is set",
		},
		{
			name:    "working_dir_without_command",
			wantErr: "working_dir: only applies when command is set",
		},
		{
			name:    "empty_program",
			wantErr: "command[0]: the program to run must not be empty",
		},
		{
			name:    "sinks_without_endpoint",
			wantErr: "sinks: exporters reach sinks at the sidecar's endpoint, so set endpoint too (e.g. unix:///var/run/spancost/sidecar.sock)",
		},
		{
			name:    "sink_without_plugin",
			wantErr: "sinks::totals::plugin: must be set, e.g. spancost.totals",
		},
		{
			name: "sink_bad_names",
			wantErr: "sinks::to tals: a sink name is letters, digits, '_', '.' and '-'\n" +
				`sinks::to tals::plugin: "spancost totals" is not a plugin entry-point name` + "\n" +
				"stats_interval: must be positive, got 0s",
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

func TestDefaultConfigNeedsCommandOrEndpoint(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	require.EqualError(t, cfg.Validate(), "either command (spawn the sidecar) or endpoint (connect to a running sidecar) must be set")
	cfg.Command = []string{"spancost", "sidecar"}
	require.NoError(t, cfg.Validate())
}
