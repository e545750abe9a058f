package pythonextension

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadata"
	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadatatest"
	"github.com/spancost/spancost/collector/internal/wirepb"
	"github.com/spancost/spancost/collector/sidecarapi"
)

func sinkConfig(endpoint, configJSONHint string) *Config {
	cfg := connectConfig(endpoint)
	cfg.StatsInterval = 20 * time.Millisecond
	cfg.Sinks = map[string]SinkConfig{"totals": {Plugin: echoPlugin, Config: map[string]any{"hint": configJSONHint}}}
	return cfg
}

func stored(spans, unavailable int64, ratio float64) *wirepb.StatsResponse {
	return &wirepb.StatsResponse{Sinks: []*wirepb.SinkStats{{
		Sink:        "totals",
		Counts:      []*wirepb.PluginEvent{{Event: "stored", Spans: spans}, {Event: "quarantined", Reason: "future", Spans: 1}},
		Gauges:      []*wirepb.Gauge{{Name: "unattributed_cost_ratio", Value: ratio}},
		Unavailable: unavailable,
	}}}
}

func TestSinksAreConfiguredAtStartAndTheirCountsBecomeMetrics(t *testing.T) {
	fake := newFakeSidecar()
	fake.setStats(stored(5, 0, 0.25))
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	set := metadatatest.NewSettings(tel)
	core, logs := observer.New(zapcore.WarnLevel)
	set.Logger = zap.New(core)
	e := newTestExtensionWithSettings(t, sinkConfig(startFakeSidecar(t, fake, "tcp", "127.0.0.1:0"), "warn"), set)
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))

	calls := fake.configureCalls()
	require.Len(t, calls, 1)
	assert.Equal(t, "totals", calls[0].GetInstance())
	assert.Equal(t, wirepb.Kind_KIND_SINK, calls[0].GetKind())
	assert.JSONEq(t, `{"hint": "warn"}`, calls[0].GetConfigJson())
	warned := logs.FilterMessage("sidecar plugin reported a problem").All()
	require.Len(t, warned, 1)
	assert.Equal(t, "database not reachable yet", warned[0].ContextMap()["warning"])

	spans := func(n int64) []metricdata.DataPoint[int64] {
		return []metricdata.DataPoint[int64]{
			{Value: n, Attributes: attribute.NewSet(attribute.String("extension", "python"), attribute.String("sink", "totals"), attribute.String("event", "stored"), attribute.String("reason", ""))},
			{Value: 1, Attributes: attribute.NewSet(attribute.String("extension", "python"), attribute.String("sink", "totals"), attribute.String("event", "quarantined"), attribute.String("reason", "future"))},
		}
	}
	eventually := func(check func(*assert.CollectT)) {
		require.EventuallyWithT(t, check, 5*time.Second, 10*time.Millisecond)
	}
	eventually(func(c *assert.CollectT) {
		m, err := tel.GetMetric("otelcol_extension_python_sink_spans")
		if !assert.NoError(c, err) {
			return
		}
		metricdatatest.AssertEqual(t, metricdata.Metrics{
			Name: m.Name, Description: m.Description, Unit: m.Unit,
			Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: spans(5)},
		}, m, metricdatatest.IgnoreTimestamp())
	})
	// Running totals grow: the counter follows. Then the sidecar restarts and
	// its totals start again from zero: what it reports is all new.
	storedCount := func(c *assert.CollectT) int64 {
		m, err := tel.GetMetric("otelcol_extension_python_sink_spans")
		if !assert.NoError(c, err) {
			return -1
		}
		for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
			if v, _ := dp.Attributes.Value("event"); v.AsString() == "stored" {
				return dp.Value
			}
		}
		return -1
	}
	fake.setStats(stored(8, 2, 0.5))
	eventually(func(c *assert.CollectT) { assert.Equal(c, int64(8), storedCount(c)) })
	fake.setStats(&wirepb.StatsResponse{Sinks: []*wirepb.SinkStats{{Sink: "totals", Counts: []*wirepb.PluginEvent{{Event: "stored", Spans: 3}}}}})
	eventually(func(c *assert.CollectT) { assert.Equal(c, int64(11), storedCount(c)) })
	metadatatest.AssertEqualExtensionPythonSinkBatchesUnavailable(t, tel, []metricdata.DataPoint[int64]{
		{Value: 2, Attributes: attribute.NewSet(attribute.String("extension", "python"), attribute.String("sink", "totals"))},
	}, metricdatatest.IgnoreTimestamp())

	fake.setStats(stored(3, 0, 0.125))
	eventually(func(c *assert.CollectT) {
		m, err := tel.GetMetric("otelcol_extension_python_sink_gauge")
		if !assert.NoError(c, err) {
			return
		}
		points := m.Data.(metricdata.Gauge[float64]).DataPoints
		if assert.Len(c, points, 1) {
			assert.InDelta(c, 0.125, points[0].Value, 0)
			name, _ := points[0].Attributes.Value("name")
			assert.Equal(c, "unattributed_cost_ratio", name.AsString())
		}
	})
	require.NoError(t, e.Shutdown(ctx))
}

func TestASinkTheSidecarRefusesStopsStartNamingIt(t *testing.T) {
	fake := newFakeSidecar()
	// The fake refuses any configuration containing '-'.
	e := newTestExtension(t, sinkConfig(startFakeSidecar(t, fake, "tcp", "127.0.0.1:0"), "bad-url"))
	ctx := context.Background()
	err := e.Start(ctx, componenttest.NewNopHost())
	require.ErrorIs(t, err, sidecarapi.ErrPluginConfig)
	assert.Contains(t, err.Error(), "sinks::totals: invalid plugin configuration")
	require.NoError(t, e.Shutdown(ctx))
}

func TestSinksAreConfiguredAgainAfterTheSidecarRestarts(t *testing.T) {
	fake := newFakeSidecar()
	e := newTestExtension(t, sinkConfig(startFakeSidecar(t, fake, "tcp", "127.0.0.1:0"), "ok"))
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })
	_, err := e.Register(ctx, testInstance, echoPlugin, "{}")
	require.NoError(t, err)
	fake.forget()
	require.NoError(t, e.replay(ctx))
	kinds := map[string]wirepb.Kind{}
	for _, call := range fake.configureCalls()[2:] {
		kinds[call.GetInstance()] = call.GetKind()
	}
	assert.Equal(t, map[string]wirepb.Kind{"totals": wirepb.Kind_KIND_SINK, testInstance: wirepb.Kind_KIND_PROCESSOR}, kinds)
}

func TestASinkTheSidecarLostIsConfiguredAgain(t *testing.T) {
	// A sidecar container restarted behind the collector's back: its sinks are
	// gone, and nothing else would configure them again.
	fake := newFakeSidecar()
	e := newTestExtension(t, sinkConfig(startFakeSidecar(t, fake, "tcp", "127.0.0.1:0"), "ok"))
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })
	time.Sleep(100 * time.Millisecond) // several readings: nothing is missing, nothing is configured
	require.Len(t, fake.configureCalls(), 1)
	fake.forget()
	require.Eventually(t, func() bool { return len(fake.configureCalls()) == 2 }, 5*time.Second, 10*time.Millisecond)
	again := fake.configureCalls()[1]
	assert.Equal(t, "totals", again.GetInstance())
	assert.Equal(t, wirepb.Kind_KIND_SINK, again.GetKind())
	time.Sleep(100 * time.Millisecond)
	assert.Len(t, fake.configureCalls(), 2, "configured once, not at every reading")
}

func TestSinceTreatsALowerTotalAsARestart(t *testing.T) {
	assert.Equal(t, int64(3), since(5, 8))
	assert.Equal(t, int64(0), since(5, 5))
	assert.Equal(t, int64(2), since(5, 2))
	assert.Equal(t, int64(4), since(0, 4))
}

var _ = metadata.Type
