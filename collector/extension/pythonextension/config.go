package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"go.opentelemetry.io/collector/config/configretry"

	"github.com/spancost/spancost/collector/internal/pluginname"
)

// Config configures the python extension.
type Config struct {
	// Command spawns the sidecar, e.g. ["spancost", "sidecar"]. The extension
	// passes the endpoint to listen on in the SPANCOST_SIDECAR_LISTEN
	// environment variable. Leave it empty to connect to a sidecar that is
	// already running (a second container in the pod); Endpoint is then required.
	Command []string `mapstructure:"command"`

	// Env adds environment variables to the spawned sidecar's environment,
	// which otherwise is the collector's.
	Env map[string]string `mapstructure:"env"`

	// WorkingDir is the spawned sidecar's working directory (default: the
	// collector's).
	WorkingDir string `mapstructure:"working_dir"`

	// Endpoint is where the sidecar listens: "unix:///abs/path.sock" or a
	// loopback "127.0.0.1:PORT", "[::1]:PORT", "localhost:PORT". Default, when
	// Command is set: a Unix socket in a new private directory (mode 0700; the
	// sidecar makes the socket 0600).
	Endpoint string `mapstructure:"endpoint"`

	// StartupTimeout bounds how long Start waits for the sidecar to answer
	// health checks as SERVING.
	StartupTimeout time.Duration `mapstructure:"startup_timeout"`

	// HealthCheck configures the liveness checks of a running sidecar.
	HealthCheck HealthCheckConfig `mapstructure:"health_check"`

	// Restart configures the backoff between restarts of a spawned sidecar
	// that died or stopped answering health checks, in the shape the
	// collector's exporters use for retry_on_failure: enabled false never
	// restarts it; max_elapsed_time (0: never) gives up after failing to
	// restart it for that long.
	Restart configretry.BackOffConfig `mapstructure:"restart"`

	// ShutdownGracePeriod is how long a spawned sidecar may take to finish
	// in-flight batches after SIGTERM before it is killed.
	ShutdownGracePeriod time.Duration `mapstructure:"shutdown_grace_period"`

	// MaxMessageBytes is the largest gRPC message sent to or accepted from
	// the sidecar; keep it above the processors' max_request_bytes.
	MaxMessageBytes int `mapstructure:"max_message_bytes"`

	// Sinks configures sink plugins in the sidecar, by name. A pipeline feeds
	// one with an otlp_grpc exporter pointed at Endpoint with the header
	// `spancost-sink: <name>`; the sidecar acknowledges a batch once the sink
	// stored it. Sinks need Endpoint set, so that exporters can reach them.
	Sinks map[string]SinkConfig `mapstructure:"sinks"`

	// StatsInterval is how often the extension reads the sinks' counters from
	// the sidecar into its own metrics.
	StatsInterval time.Duration `mapstructure:"stats_interval"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// SinkConfig configures one sink plugin.
type SinkConfig struct {
	// Plugin is the sink's entry-point name in the group spancost.sinks,
	// e.g. spancost.totals.
	Plugin string `mapstructure:"plugin"`
	// Config is handed to the plugin, which validates it at start-up.
	Config map[string]any `mapstructure:"config"`
}

// configJSON is the sink configuration as handed to the sidecar.
func (s SinkConfig) configJSON() (string, error) {
	if s.Config == nil {
		return "{}", nil
	}
	b, err := json.Marshal(s.Config)
	if err != nil {
		return "", fmt.Errorf("cannot be encoded as JSON for the plugin: %w", err)
	}
	return string(b), nil
}

var sinkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// sinkNames are the configured sink names, sorted (for a stable order).
func (cfg *Config) sinkNames() []string {
	names := make([]string, 0, len(cfg.Sinks))
	for name := range cfg.Sinks {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// HealthCheckConfig configures grpc.health.v1 liveness checks.
type HealthCheckConfig struct {
	// Interval between two checks.
	Interval time.Duration `mapstructure:"interval"`
	// Timeout of one check.
	Timeout time.Duration `mapstructure:"timeout"`
	// FailureThreshold is how many checks in a row may fail before a spawned
	// sidecar is killed and restarted (a connected sidecar is only reported).
	FailureThreshold int `mapstructure:"failure_threshold"`
}

const minMaxMessageBytes = 64 * 1024

// Validate checks the configuration; each error names the offending key.
func (cfg *Config) Validate() error {
	var errs []error
	if len(cfg.Command) == 0 && cfg.Endpoint == "" {
		errs = append(errs, errors.New("either command (spawn the sidecar) or endpoint (connect to a running sidecar) must be set"))
	}
	for i, arg := range cfg.Command {
		if i == 0 && arg == "" {
			errs = append(errs, errors.New("command[0]: the program to run must not be empty"))
		}
	}
	if cfg.Endpoint != "" {
		if _, err := parseEndpoint(cfg.Endpoint); err != nil {
			errs = append(errs, fmt.Errorf("endpoint: %w", err))
		}
	}
	if cfg.WorkingDir != "" && len(cfg.Command) == 0 {
		errs = append(errs, errors.New("working_dir: only applies when command is set"))
	}
	if len(cfg.Env) > 0 && len(cfg.Command) == 0 {
		errs = append(errs, errors.New("env: only applies when command is set"))
	}
	errs = append(errs, positive("startup_timeout", cfg.StartupTimeout),
		positive("health_check.interval", cfg.HealthCheck.Interval),
		positive("health_check.timeout", cfg.HealthCheck.Timeout),
		positive("restart.initial_interval", cfg.Restart.InitialInterval),
		positive("restart.max_interval", cfg.Restart.MaxInterval),
		positive("shutdown_grace_period", cfg.ShutdownGracePeriod))
	if cfg.HealthCheck.FailureThreshold < 1 {
		errs = append(errs, fmt.Errorf("health_check.failure_threshold: must be at least 1, got %d", cfg.HealthCheck.FailureThreshold))
	}
	if cfg.Restart.MaxInterval > 0 && cfg.Restart.MaxInterval < cfg.Restart.InitialInterval {
		errs = append(errs, fmt.Errorf("restart.max_interval: %s is shorter than restart.initial_interval %s", cfg.Restart.MaxInterval, cfg.Restart.InitialInterval))
	}
	if cfg.Restart.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("restart.multiplier: must be at least 1, got %g", cfg.Restart.Multiplier))
	}
	if cfg.MaxMessageBytes < minMaxMessageBytes {
		errs = append(errs, fmt.Errorf("max_message_bytes: must be at least %d, got %d", minMaxMessageBytes, cfg.MaxMessageBytes))
	}
	if len(cfg.Sinks) > 0 && cfg.Endpoint == "" {
		errs = append(errs, errors.New("sinks: exporters reach sinks at the sidecar's endpoint, so set endpoint too (e.g. unix:///var/run/spancost/sidecar.sock)"))
	}
	for _, name := range cfg.sinkNames() {
		sink := cfg.Sinks[name]
		if !sinkName.MatchString(name) {
			errs = append(errs, fmt.Errorf("sinks::%s: a sink name is letters, digits, '_', '.' and '-'", name))
		}
		if sink.Plugin == "" {
			errs = append(errs, fmt.Errorf("sinks::%s::plugin: must be set, e.g. spancost.totals", name))
		} else if err := pluginname.Check(sink.Plugin); err != nil {
			errs = append(errs, fmt.Errorf("sinks::%s::plugin: %w", name, err))
		}
		if _, err := sink.configJSON(); err != nil {
			errs = append(errs, fmt.Errorf("sinks::%s::config: %w", name, err))
		}
	}
	if len(cfg.Sinks) > 0 {
		errs = append(errs, positive("stats_interval", cfg.StatsInterval))
	}
	return errors.Join(errs...)
}

func positive(key string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s: must be positive, got %s", key, d)
	}
	return nil
}
