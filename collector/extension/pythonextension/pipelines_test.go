package pythonextension

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/extension/extensioncapabilities"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.yaml.in/yaml/v3"

	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadata"
	"github.com/spancost/spancost/collector/internal/wirepb"
)

// pipelineCollector is the collector configuration the checks read, with
// SOCKET for the sidecar's endpoint; each case edits it.
const pipelineCollector = `
receivers:
  otlp:
    protocols: {grpc: {endpoint: 127.0.0.1:4317}, http: {endpoint: 127.0.0.1:4318}}
  otlp/agents:
    protocols:
      # As the collector's effective configuration lists a protocol it does not serve.
      http: null
      grpc: {endpoint: 0.0.0.0:4317, auth: {authenticator: bearertokenauth}}
processors:
  batch: {}
  python/price: {extension: python, plugin: test.echo, config: {prices: {}}}
  python/trust: {plugin: test.echo, config: {prices: {}, trust_upstream: true}}
  python/tag: {extension: python, plugin: test.echo, config: {tag: {}}}
  python/other: {extension: python/second, plugin: test.echo, config: {prices: {}}}
  python/bad: {plugin: test.echo, config: {rate: -1}}
exporters:
  debug: {}
  otlp_grpc/totals:
    endpoint: unix://SOCKET
    headers: {spancost-sink: totals}
  otlp/plain:
    endpoint: unix:SOCKET
  otlp_grpc/elsewhere:
    endpoint: backend:4317
connectors:
  forward: {}
  forward/b: {}
service:
  pipelines:
PIPELINES`

// notify runs the checks of an extension with a sink "totals" that books
// cost.usd against the configuration with pipelines.
func notify(t *testing.T, pipelines string) (*pythonExtension, *fakeSidecar, error) {
	t.Helper()
	socket := filepath.Join(t.TempDir(), "s.sock")
	fake := newFakeSidecar()
	cfg := connectConfig(startFakeSidecar(t, fake, "unix", socket))
	cfg.Sinks = map[string]SinkConfig{"totals": {Plugin: echoPlugin, Config: map[string]any{"books": true}}}
	set := extensiontest.NewNopSettings(metadata.Type)
	set.ID = component.MustNewID("python") // the name the processors use by default
	e := newTestExtensionWithSettings(t, cfg, set)
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })

	text := strings.ReplaceAll(pipelineCollector, "SOCKET", socket)
	text = strings.Replace(text, "PIPELINES", pipelines, 1)
	var raw map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(text), &raw))
	conf := confmap.NewFromStringMap(raw)
	return e, fake, e.NotifyConfigSnapshot(ctx, extensioncapabilities.NewConfigSnapshot(conf, conf))
}

func TestPipelineChecks(t *testing.T) {
	tests := []struct {
		name      string
		pipelines string
		wantErr   []string // each must appear; none: no error
	}{
		{
			name:      "priced before the sink",
			pipelines: "    traces: {receivers: [otlp], processors: [python/price, batch], exporters: [debug, otlp_grpc/totals]}",
		},
		{
			name:      "no sink: no owner needed",
			pipelines: "    traces: {receivers: [otlp], processors: [batch], exporters: [debug, otlp_grpc/elsewhere]}",
		},
		{
			name:      "sink without a pricing processor",
			pipelines: "    traces: {receivers: [otlp], processors: [python/tag, batch], exporters: [otlp_grpc/totals]}",
			wantErr: []string{
				`service::pipelines::traces: exporter "otlp_grpc/totals" feeds the sink "totals", which books cost.usd, but no python processor on the pipeline owns cost.usd`,
				`which books cost.unpriced_reason`,
				`to service::pipelines::traces::processors`,
			},
		},
		{
			name:      "sink found by endpoint, without the header",
			pipelines: "    traces: {receivers: [otlp], processors: [batch], exporters: [otlp/plain]}",
			wantErr:   []string{`exporter "otlp/plain" feeds the sink "totals"`},
		},
		{
			name:      "a processor of another python extension does not count",
			pipelines: "    traces: {receivers: [otlp], processors: [python/other], exporters: [otlp_grpc/totals]}",
			wantErr:   []string{`no python processor on the pipeline owns cost.usd`},
		},
		{
			name: "priced upstream of a connector",
			pipelines: `    traces/in: {receivers: [otlp], processors: [python/price], exporters: [forward]}
    traces/out: {receivers: [forward], processors: [batch], exporters: [otlp_grpc/totals]}`,
		},
		{
			name: "one of two pipelines into the connector not priced",
			pipelines: `    traces/a: {receivers: [otlp], processors: [python/price], exporters: [forward]}
    traces/b: {receivers: [otlp/agents], processors: [batch], exporters: [forward]}
    traces/out: {receivers: [forward], exporters: [otlp_grpc/totals]}`,
			wantErr: []string{`service::pipelines::traces/out: exporter "otlp_grpc/totals" feeds the sink "totals"`},
		},
		{
			name: "a real receiver beside the connector",
			pipelines: `    traces/a: {receivers: [otlp], processors: [python/price], exporters: [forward]}
    traces/out: {receivers: [forward, otlp/agents], exporters: [otlp_grpc/totals]}`,
			wantErr: []string{`service::pipelines::traces/out:`},
		},
		{
			name:      "trusting upstream prices behind authenticated receivers",
			pipelines: "    traces: {receivers: [otlp/agents], processors: [python/trust], exporters: [otlp_grpc/totals]}",
		},
		{
			name:      "trusting upstream prices from anyone",
			pipelines: "    traces: {receivers: [otlp/agents, otlp], processors: [python/trust], exporters: [debug]}",
			wantErr: []string{
				`processors::python/trust: its plugin keeps the cost.usd an upstream collector set (trust_upstream), but on service::pipelines::traces the receiver "otlp" does not authenticate its senders`,
			},
		},
		{
			name: "trusting upstream prices, unauthenticated through a connector",
			pipelines: `    traces/in: {receivers: [otlp], exporters: [forward/b]}
    traces: {receivers: [forward/b], processors: [python/trust], exporters: [debug]}`,
			wantErr: []string{`the receiver "otlp" does not authenticate its senders`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := notify(t, tt.pipelines)
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

func TestPipelineCheckConfiguresProcessorsOnce(t *testing.T) {
	e, fake, err := notify(t, "    traces: {receivers: [otlp], processors: [python/price, python/tag], exporters: [otlp_grpc/totals]}")
	require.NoError(t, err)
	configured := map[string]string{}
	for _, call := range fake.configureCalls() {
		if call.GetKind() == wirepb.Kind_KIND_PROCESSOR {
			configured[call.GetInstance()] = call.GetConfigJson()
		}
	}
	assert.Equal(t, map[string]string{"python/price": `{"prices":{}}`, "python/tag": `{"tag":{}}`}, configured,
		"the processors on pipelines that name this extension, with the JSON the processor sends")

	// The processor's own Register finds its registration done: not configured twice.
	calls := len(fake.configureCalls())
	ownership, err := e.Register(context.Background(), "python/price", echoPlugin, `{"prices":{}}`)
	require.NoError(t, err)
	assert.Equal(t, []string{"cost.usd", "cost.unpriced_reason"}, ownership.GetKeys())
	assert.Len(t, fake.configureCalls(), calls)
	// Another configuration is configured anew.
	_, err = e.Register(context.Background(), "python/price", echoPlugin, `{"prices":{"x":1}}`)
	require.NoError(t, err)
	assert.Len(t, fake.configureCalls(), calls+1)
}

func TestPipelineCheckNamesAProcessorTheSidecarRefuses(t *testing.T) {
	_, _, err := notify(t, "    traces: {receivers: [otlp], processors: [python/bad], exporters: [debug]}")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `processors::python/bad::config: plugin "test.echo" rejected its configuration: invalid plugin configuration: `+rejectedMessage)
}
