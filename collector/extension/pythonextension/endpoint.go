package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
)

const unixScheme = "unix://"

// endpoint is a parsed Config.Endpoint.
type endpoint struct {
	// socketPath is set for a Unix socket.
	socketPath string
	// hostPort is set for TCP.
	hostPort string
}

// target is the gRPC dial target.
func (e endpoint) target() string {
	if e.socketPath != "" {
		return unixScheme + e.socketPath
	}
	return "passthrough:///" + e.hostPort
}

// String is the form handed to the sidecar in SPANCOST_SIDECAR_LISTEN.
func (e endpoint) String() string {
	if e.socketPath != "" {
		return unixScheme + e.socketPath
	}
	return e.hostPort
}

var errNotLoopback = errors.New("the sidecar must listen on a Unix socket or a loopback address (127.0.0.1, [::1], localhost)")

func parseEndpoint(s string) (endpoint, error) {
	if rest, ok := strings.CutPrefix(s, unixScheme); ok {
		if !filepath.IsAbs(rest) {
			return endpoint{}, fmt.Errorf("%q: a Unix socket path must be absolute (unix:///path/to/sidecar.sock)", s)
		}
		return endpoint{socketPath: filepath.Clean(rest)}, nil
	}
	if strings.Contains(s, "://") {
		return endpoint{}, fmt.Errorf("%q: use unix:///path or host:port", s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return endpoint{}, fmt.Errorf("%q: %w", s, err)
	}
	if port == "" || port == "0" {
		return endpoint{}, fmt.Errorf("%q: a fixed port is required", s)
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return endpoint{}, fmt.Errorf("%q: %w", s, errNotLoopback)
		}
	}
	return endpoint{hostPort: s}, nil
}
