package pythonextension

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in         string
		wantTarget string
		wantString string
		wantErr    string
	}{
		{in: "unix:///run/spancost/sidecar.sock", wantTarget: "unix:///run/spancost/sidecar.sock", wantString: "unix:///run/spancost/sidecar.sock"},
		{in: "unix:///run/spancost/../spancost//sidecar.sock", wantTarget: "unix:///run/spancost/sidecar.sock", wantString: "unix:///run/spancost/sidecar.sock"},
		{in: "127.0.0.1:4390", wantTarget: "passthrough:///127.0.0.1:4390", wantString: "127.0.0.1:4390"},
		{in: "127.3.2.1:4390", wantTarget: "passthrough:///127.3.2.1:4390", wantString: "127.3.2.1:4390"},
		{in: "[::1]:4390", wantTarget: "passthrough:///[::1]:4390", wantString: "[::1]:4390"},
		{in: "localhost:4390", wantTarget: "passthrough:///localhost:4390", wantString: "localhost:4390"},
		{in: "unix://sidecar.sock", wantErr: `"unix://sidecar.sock": a Unix socket path must be absolute (unix:///path/to/sidecar.sock)`},
		{in: "dns:///localhost:4390", wantErr: `"dns:///localhost:4390": use unix:///path or host:port`},
		{in: "127.0.0.1", wantErr: `"127.0.0.1": address 127.0.0.1: missing port in address`},
		{in: "127.0.0.1:", wantErr: `"127.0.0.1:": a fixed port is required`},
		{in: "localhost:0", wantErr: `"localhost:0": a fixed port is required`},
		{in: ":4390", wantErr: `":4390": ` + errNotLoopback.Error()},
		{in: "[::]:4390", wantErr: `"[::]:4390": ` + errNotLoopback.Error()},
		{in: "sidecar.internal:4390", wantErr: `"sidecar.internal:4390": ` + errNotLoopback.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ep, err := parseEndpoint(tt.in)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantTarget, ep.target())
			assert.Equal(t, tt.wantString, ep.String())
		})
	}
}
