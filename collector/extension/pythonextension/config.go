package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import (
	"errors"
	"fmt"
	"time"
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
	// that died or stopped answering health checks.
	Restart RestartConfig `mapstructure:"restart"`

	// ShutdownGracePeriod is how long a spawned sidecar may take to finish
	// in-flight batches after SIGTERM before it is killed.
	ShutdownGracePeriod time.Duration `mapstructure:"shutdown_grace_period"`

	// MaxMessageBytes is the largest gRPC message sent to or accepted from
	// the sidecar; keep it above the processors' max_request_bytes.
	MaxMessageBytes int `mapstructure:"max_message_bytes"`

	// prevent unkeyed literal initialization
	_ struct{}
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

// RestartConfig configures the exponential backoff between restarts.
type RestartConfig struct {
	// InitialInterval is the wait before the first restart.
	InitialInterval time.Duration `mapstructure:"initial_interval"`
	// MaxInterval caps the wait between restarts.
	MaxInterval time.Duration `mapstructure:"max_interval"`
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
	if cfg.MaxMessageBytes < minMaxMessageBytes {
		errs = append(errs, fmt.Errorf("max_message_bytes: must be at least %d, got %d", minMaxMessageBytes, cfg.MaxMessageBytes))
	}
	return errors.Join(errs...)
}

func positive(key string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s: must be positive, got %s", key, d)
	}
	return nil
}
