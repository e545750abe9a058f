package pythonprocessor // import "github.com/spancost/spancost/collector/processor/pythonprocessor"

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/spancost/spancost/collector/internal/pluginname"
)

// OnError says what happens to a batch when the sidecar fails, times out or
// answers something that cannot be decoded.
type OnError string

const (
	// OnErrorPass forwards the batch unchanged and counts it.
	OnErrorPass OnError = "pass"
	// OnErrorReject returns a retryable error to the sender.
	OnErrorReject OnError = "reject"
)

// Config configures the python processor.
type Config struct {
	// Extension names the python extension that runs the sidecar.
	Extension component.ID `mapstructure:"extension"`

	// Plugin is the entry-point name of a plugin in the sidecar's
	// `spancost.processors` group, e.g. spancost.environment.
	Plugin string `mapstructure:"plugin"`

	// PluginConfig is handed to the plugin as JSON; the plugin validates it
	// when the collector starts and the collector refuses to start if it is
	// wrong.
	PluginConfig map[string]any `mapstructure:"config"`

	// Timeout bounds one round trip to the sidecar; a batch split into
	// several requests (see MaxRequestBytes) gets it for each request.
	Timeout time.Duration `mapstructure:"timeout"`

	// OnError is pass or reject; see OnError.
	OnError OnError `mapstructure:"on_error"`

	// MaxRequestBytes is the largest request sent to the sidecar; a larger
	// batch is split into several requests (never dropped).
	MaxRequestBytes int `mapstructure:"max_request_bytes"`

	// prevent unkeyed literal initialization
	_ struct{}
}

const (
	minRequestBytes = 16 * 1024
	// maxTimeout keeps a frozen sidecar from stalling a pipeline for long.
	maxTimeout = time.Minute
)

// Validate checks the configuration; each error names the offending key.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.Plugin == "" {
		errs = append(errs, errors.New("plugin: must be set, e.g. spancost.environment"))
	} else if err := pluginname.Check(cfg.Plugin); err != nil {
		errs = append(errs, fmt.Errorf("plugin: %w", err))
	}
	if cfg.Timeout <= 0 || cfg.Timeout > maxTimeout {
		errs = append(errs, fmt.Errorf("timeout: must be positive and at most %s, got %s", maxTimeout, cfg.Timeout))
	}
	if cfg.OnError != OnErrorPass && cfg.OnError != OnErrorReject {
		errs = append(errs, fmt.Errorf("on_error: must be %q or %q, got %q", OnErrorPass, OnErrorReject, cfg.OnError))
	}
	if cfg.MaxRequestBytes < minRequestBytes {
		errs = append(errs, fmt.Errorf("max_request_bytes: must be at least %d, got %d", minRequestBytes, cfg.MaxRequestBytes))
	}
	if _, err := cfg.pluginConfigJSON(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// pluginConfigJSON is the plugin configuration as handed to the sidecar.
func (cfg *Config) pluginConfigJSON() (string, error) {
	if cfg.PluginConfig == nil {
		return "{}", nil
	}
	b, err := json.Marshal(cfg.PluginConfig)
	if err != nil {
		return "", fmt.Errorf("config: cannot be encoded as JSON for the plugin: %w", err)
	}
	return string(b), nil
}
