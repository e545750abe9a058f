package pythonprocessor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spancost/spancost/collector/internal/wirepb"
	"github.com/spancost/spancost/collector/processor/pythonprocessor/internal/metadata"
	"github.com/spancost/spancost/collector/processor/pythonprocessor/internal/metadatatest"
	"github.com/spancost/spancost/collector/sidecarapi"
)

var testID = component.MustNewIDWithName("python", "cost")

// fakeSidecar stands in for the python extension.
type fakeSidecar struct {
	component.StartFunc
	component.ShutdownFunc

	registerErr error
	// ownership is what Register says the plugin owns.
	ownership *wirepb.Ownership
	// process answers a request; nil echoes it.
	process func(ctx context.Context, traces []byte) (*wirepb.ProcessTracesResponse, error)

	mu         sync.Mutex
	registered map[string][2]string // instance -> plugin, config JSON
	requests   [][]byte
}

var _ sidecarapi.Sidecar = (*fakeSidecar)(nil)

func (f *fakeSidecar) Register(_ context.Context, instance, plugin, configJSON string) (*wirepb.Ownership, error) {
	if f.registerErr != nil {
		return nil, f.registerErr
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.registered == nil {
		f.registered = map[string][2]string{}
	}
	f.registered[instance] = [2]string{plugin, configJSON}
	return f.ownership, nil
}

func (f *fakeSidecar) Unregister(instance string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.registered, instance)
}

func (f *fakeSidecar) ProcessTraces(ctx context.Context, _ string, traces []byte) (*wirepb.ProcessTracesResponse, error) {
	f.mu.Lock()
	f.requests = append(f.requests, traces)
	f.mu.Unlock()
	if f.process == nil {
		return fullAnswer(traces), nil
	}
	return f.process(ctx, traces)
}

func (f *fakeSidecar) registrations() map[string][2]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][2]string{}
	for k, v := range f.registered {
		out[k] = v
	}
	return out
}

func (f *fakeSidecar) requestSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	sizes := make([]int, len(f.requests))
	for i, r := range f.requests {
		sizes[i] = len(r)
	}
	return sizes
}

// fullAnswer is an answer in the full form: the batch as the plugin left it.
func fullAnswer(traces []byte) *wirepb.ProcessTracesResponse {
	return &wirepb.ProcessTracesResponse{Result: &wirepb.ProcessTracesResponse_Traces{Traces: traces}}
}

// failWith makes every request fail with err.
func failWith(err error) func(context.Context, []byte) (*wirepb.ProcessTracesResponse, error) {
	return func(context.Context, []byte) (*wirepb.ProcessTracesResponse, error) { return nil, err }
}

// tagSpans is a plugin that marks every span and counts what it did.
func tagSpans(_ context.Context, traces []byte) (*wirepb.ProcessTracesResponse, error) {
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(traces)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				spans.At(k).Attributes().PutStr("cost.source", "test")
			}
		}
	}
	out, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	if err != nil {
		return nil, err
	}
	return &wirepb.ProcessTracesResponse{Result: &wirepb.ProcessTracesResponse_Traces{Traces: out}, Events: []*wirepb.PluginEvent{
		{Event: "tagged", Reason: "cost.source=test", Spans: int64(td.SpanCount())},
		{Event: "unpriced", Reason: "unknown_model", Spans: 1},
	}}, nil
}

// host offers extensions to the processor.
type host map[component.ID]component.Component

func (h host) GetExtensions() map[component.ID]component.Component { return h }

func testConfig() *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.Plugin = "spancost.cost"
	cfg.PluginConfig = map[string]any{"currency": "USD"}
	return cfg
}

type testProcessor struct {
	processor.Traces
	tt   *componenttest.Telemetry
	sink *consumertest.TracesSink
}

// startProcessor creates and starts the processor with sidecar behind the
// extension named by cfg.
func startProcessor(t *testing.T, cfg *Config, sidecar *fakeSidecar) *testProcessor {
	t.Helper()
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	set := metadatatest.NewSettings(tt)
	set.ID = testID
	sink := new(consumertest.TracesSink)
	proc, err := NewFactory().CreateTraces(context.Background(), set, cfg, sink)
	require.NoError(t, err)
	require.NoError(t, proc.Start(context.Background(), host{cfg.Extension: sidecar}))
	t.Cleanup(func() { require.NoError(t, proc.Shutdown(context.Background())) })
	return &testProcessor{Traces: proc, tt: tt, sink: sink}
}

// protoBytes is td as the wire carries it: two batches with equal bytes are
// identical, down to the order of attributes.
func protoBytes(t *testing.T, td ptrace.Traces) []byte {
	t.Helper()
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	return b
}

// isPermanent reports whether err is marked with consumererror.NewPermanent,
// which tells receivers not to retry. (consumererror is not a dependency of
// this module, so its unexported type is recognised by name.)
func isPermanent(err error) bool {
	for _, e := range unwrapAll(err) {
		typ := reflect.TypeOf(e)
		if typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if typ.PkgPath() == "go.opentelemetry.io/collector/consumer/consumererror" && typ.Name() == "permanent" {
			return true
		}
	}
	return false
}

func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		out = append(out, unwrapAll(u.Unwrap())...)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
	}
	return out
}

func TestStart(t *testing.T) {
	otherExtension := struct {
		component.StartFunc
		component.ShutdownFunc
	}{}
	tests := []struct {
		name    string
		host    component.Host
		wantErr string
		wantIs  error
	}{
		{
			name: "registered",
			host: host{component.MustNewID("python"): &fakeSidecar{}},
		},
		{
			name:    "extension missing",
			host:    componenttest.NewNopHost(),
			wantErr: `extension: "python" is not running; configure it under extensions and list it in service::extensions`,
		},
		{
			name:    "extension of another type",
			host:    host{component.MustNewID("python"): otherExtension},
			wantErr: `extension: "python" is not a python extension`,
		},
		{
			name:    "plugin not found",
			host:    host{component.MustNewID("python"): &fakeSidecar{registerErr: fmt.Errorf("%w: no plugin named spancost.cost", sidecarapi.ErrPluginNotFound)}},
			wantErr: `plugin: "spancost.cost": plugin not found: no plugin named spancost.cost`,
			wantIs:  sidecarapi.ErrPluginNotFound,
		},
		{
			name:    "configuration rejected",
			host:    host{component.MustNewID("python"): &fakeSidecar{registerErr: fmt.Errorf("%w: currency: EUR is not priced", sidecarapi.ErrPluginConfig)}},
			wantErr: `config: plugin "spancost.cost" rejected its configuration: invalid plugin configuration: currency: EUR is not priced`,
			wantIs:  sidecarapi.ErrPluginConfig,
		},
		{
			name:    "sidecar unavailable",
			host:    host{component.MustNewID("python"): &fakeSidecar{registerErr: status.Error(codes.Unavailable, "connection refused")}},
			wantErr: `plugin "spancost.cost": rpc error: code = Unavailable desc = connection refused`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc, err := NewFactory().CreateTraces(context.Background(), processorSettings(), testConfig(), consumertest.NewNop())
			require.NoError(t, err)
			err = proc.Start(context.Background(), tt.host)
			if tt.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.EqualError(t, err, tt.wantErr)
			}
			if tt.wantIs != nil {
				assert.ErrorIs(t, err, tt.wantIs)
			}
			require.NoError(t, proc.Shutdown(context.Background()))
		})
	}
}

func TestStartRegistersAndShutdownUnregisters(t *testing.T) {
	sidecar := &fakeSidecar{}
	cfg := testConfig()
	cfg.Extension = component.MustNewIDWithName("python", "sidecar")
	proc, err := NewFactory().CreateTraces(context.Background(), processorSettings(), cfg, consumertest.NewNop())
	require.NoError(t, err)

	require.NoError(t, proc.Start(context.Background(), host{cfg.Extension: sidecar}))
	assert.Equal(t, map[string][2]string{"python/cost": {"spancost.cost", `{"currency":"USD"}`}}, sidecar.registrations())
	require.NoError(t, proc.Shutdown(context.Background()))
	assert.Empty(t, sidecar.registrations())
}

func processorSettings() processor.Settings {
	set := metadatatest.NewSettings(componenttest.NewTelemetry())
	set.ID = testID
	return set
}

func TestProcessTracesAppliesPlugin(t *testing.T) {
	sidecar := &fakeSidecar{process: tagSpans}
	p := startProcessor(t, testConfig(), sidecar)
	td := generateTraces(2, 2, 3, 16)

	require.NoError(t, p.ConsumeTraces(context.Background(), td))

	require.Len(t, p.sink.AllTraces(), 1)
	got := p.sink.AllTraces()[0]
	assert.Equal(t, spanIDs(td), spanIDs(got))
	forEachSpan(got, func(span ptrace.Span) {
		v, ok := span.Attributes().Get("cost.source")
		assert.True(t, ok, "span %s was not tagged", span.SpanID())
		assert.Equal(t, "test", v.Str())
	})
	metadatatest.AssertEqualProcessorPythonRequestsSent(t, p.tt, points(1), metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualProcessorPythonSpansSent(t, p.tt, points(12), metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualProcessorPythonPluginEvents(t, p.tt, []metricdata.DataPoint[int64]{
		point(12, attribute.String("event", "tagged"), attribute.String("reason", "cost.source=test")),
		point(1, attribute.String("event", "unpriced"), attribute.String("reason", "unknown_model")),
	}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualProcessorPythonRoundTripDuration(t, p.tt, []metricdata.HistogramDataPoint[float64]{{Attributes: attribute.NewSet(ownAttr)}},
		metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreValue())
	_, err := p.tt.GetMetric("otelcol_processor_python_requests_failed")
	assert.Error(t, err, "no request failed")
}

func TestSidecarFailure(t *testing.T) {
	tests := []struct {
		name       string
		process    func(context.Context, []byte) (*wirepb.ProcessTracesResponse, error)
		wantReason string
	}{
		{
			name:       "sidecar down",
			process:    failWith(status.Error(codes.Unavailable, "connection refused")),
			wantReason: "unavailable",
		},
		{
			name:       "plugin raised",
			process:    failWith(status.Error(codes.Internal, "KeyError: 'model'")),
			wantReason: "plugin_error",
		},
		{
			name:       "python exception",
			process:    failWith(status.Error(codes.Unknown, "Exception calling application: boom")),
			wantReason: "plugin_error",
		},
		{
			name:       "instance unknown",
			process:    failWith(status.Error(codes.FailedPrecondition, `instance "python/cost" is not configured`)),
			wantReason: "invalid_config",
		},
		{
			name: "configuration refused after restart",
			process: failWith(fmt.Errorf(`configuring instance "python/cost" again after the sidecar lost it: %w`,
				fmt.Errorf("%w: currency: EUR is not priced", sidecarapi.ErrPluginConfig))),
			wantReason: "invalid_config",
		},
		{
			name:       "plugin uninstalled",
			process:    failWith(fmt.Errorf("%w: no plugin named spancost.cost", sidecarapi.ErrPluginNotFound)),
			wantReason: "invalid_config",
		},
		{
			name:       "deadline",
			process:    failWith(status.Error(codes.DeadlineExceeded, "context deadline exceeded")),
			wantReason: "timeout",
		},
		{
			name:       "context deadline",
			process:    failWith(fmt.Errorf("waiting for the sidecar: %w", context.DeadlineExceeded)),
			wantReason: "timeout",
		},
		{
			name:       "canceled",
			process:    failWith(status.Error(codes.Canceled, "context canceled")),
			wantReason: "unavailable",
		},
		{
			name:       "message too large",
			process:    failWith(status.Error(codes.ResourceExhausted, "grpc: received message larger than max")),
			wantReason: "other",
		},
		{
			name:       "garbage answer",
			process:    answer(fullAnswer([]byte{0xff, 0xff, 0xff, 0xff})),
			wantReason: "bad_response",
		},
		{
			name:       "other",
			process:    failWith(errors.New("something else")),
			wantReason: "other",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/pass", func(t *testing.T) {
			p := startProcessor(t, testConfig(), &fakeSidecar{process: tt.process})
			td := generateTraces(2, 2, 3, 16)
			want := protoBytes(t, td)

			require.NoError(t, p.ConsumeTraces(context.Background(), td))

			require.Len(t, p.sink.AllTraces(), 1)
			assert.Equal(t, want, protoBytes(t, p.sink.AllTraces()[0]), "the batch goes on exactly as it came")
			assertFailed(t, p, tt.wantReason)
			metadatatest.AssertEqualProcessorPythonSpansPassedUnchanged(t, p.tt, points(12), metricdatatest.IgnoreTimestamp())
			_, err := p.tt.GetMetric("otelcol_processor_python_spans_rejected")
			assert.Error(t, err, "nothing was rejected")
		})
		t.Run(tt.name+"/reject", func(t *testing.T) {
			cfg := testConfig()
			cfg.OnError = OnErrorReject
			p := startProcessor(t, cfg, &fakeSidecar{process: tt.process})
			td := generateTraces(2, 2, 3, 16)
			want := protoBytes(t, td)

			err := p.ConsumeTraces(context.Background(), td)

			require.ErrorIs(t, err, errSidecar)
			assert.ErrorContains(t, err, "python sidecar failed ("+tt.wantReason+"), on_error is reject: ")
			assert.False(t, isPermanent(err), "the sender must retry the batch")
			assert.Empty(t, p.sink.AllTraces())
			assert.Equal(t, want, protoBytes(t, td), "the batch the sender retries is untouched")
			assertFailed(t, p, tt.wantReason)
			metadatatest.AssertEqualProcessorPythonSpansRejected(t, p.tt, points(12), metricdatatest.IgnoreTimestamp())
			_, err = p.tt.GetMetric("otelcol_processor_python_spans_passed_unchanged")
			assert.Error(t, err, "nothing was passed")
		})
	}
}

func answer(resp *wirepb.ProcessTracesResponse) func(context.Context, []byte) (*wirepb.ProcessTracesResponse, error) {
	return func(context.Context, []byte) (*wirepb.ProcessTracesResponse, error) { return resp, nil }
}

// ownAttr labels the telemetry of the processor under test, as
// processorhelper labels its own.
var ownAttr = attribute.String("processor", "python/cost")

// point is one data point of a counter of the processor under test.
func point(value int64, attrs ...attribute.KeyValue) metricdata.DataPoint[int64] {
	return metricdata.DataPoint[int64]{Value: value, Attributes: attribute.NewSet(append(attrs, ownAttr)...)}
}

// points is a counter of the processor under test with a single data point.
func points(value int64, attrs ...attribute.KeyValue) []metricdata.DataPoint[int64] {
	return []metricdata.DataPoint[int64]{point(value, attrs...)}
}

func assertFailed(t *testing.T, p *testProcessor, reason string) {
	t.Helper()
	metadatatest.AssertEqualProcessorPythonRequestsFailed(t, p.tt, points(1, attribute.String("reason", reason)), metricdatatest.IgnoreTimestamp())
}

func TestRejectIsUnavailableToTheSender(t *testing.T) {
	for _, cause := range []error{
		status.Error(codes.Unavailable, "connection refused"),
		status.Error(codes.Internal, "plugin raised"), // a sender told INTERNAL would not retry
		status.Error(codes.FailedPrecondition, "instance unknown"),
		errors.New("no status at all"),
	} {
		cfg := testConfig()
		cfg.OnError = OnErrorReject
		p := startProcessor(t, cfg, &fakeSidecar{process: failWith(cause)})

		err := p.ConsumeTraces(context.Background(), generateTraces(1, 1, 1, 0))
		require.ErrorIs(t, err, errSidecar)
		assert.ErrorContains(t, err, "on_error is reject: "+cause.Error())
		assert.Equal(t, codes.Unavailable, status.Code(err), "cause %v", cause)
	}
}

func TestTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.Timeout = 100 * time.Millisecond
	hang := func(ctx context.Context, _ []byte) (*wirepb.ProcessTracesResponse, error) {
		<-ctx.Done()
		// What the gRPC client returns when the deadline passes.
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	p := startProcessor(t, cfg, &fakeSidecar{process: hang})

	began := time.Now()
	require.NoError(t, p.ConsumeTraces(context.Background(), generateTraces(1, 1, 5, 0)))
	elapsed := time.Since(began)

	assert.GreaterOrEqual(t, elapsed, cfg.Timeout)
	assert.Less(t, elapsed, cfg.Timeout+time.Second)
	require.Len(t, p.sink.AllTraces(), 1)
	assertFailed(t, p, "timeout")
}

func TestLargeBatchIsSplit(t *testing.T) {
	const maxBytes = 4 << 20
	cfg := testConfig()
	cfg.MaxRequestBytes = maxBytes
	cfg.Timeout = 10 * time.Second // the race detector makes 20 MB slow
	sidecar := &fakeSidecar{}
	p := startProcessor(t, cfg, sidecar)
	td := generateTraces(4, 2, 2500, 1000)
	size := (&ptrace.ProtoMarshaler{}).TracesSize(td)
	require.Greater(t, size, 20<<20)

	require.NoError(t, p.ConsumeTraces(context.Background(), td))

	sizes := sidecar.requestSizes()
	require.Greater(t, len(sizes), 5)
	for i, s := range sizes {
		assert.LessOrEqual(t, s, maxBytes, "request %d", i)
	}
	require.Len(t, p.sink.AllTraces(), 1)
	assert.Equal(t, spanIDs(td), spanIDs(p.sink.AllTraces()[0]), "every span exactly once, in order")
	metadatatest.AssertEqualProcessorPythonRequestsSent(t, p.tt, points(int64(len(sizes))), metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualProcessorPythonSpansSent(t, p.tt, points(int64(td.SpanCount())), metricdatatest.IgnoreTimestamp())
}

func TestFailedPartPassesWholeBatch(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRequestBytes = minRequestBytes
	calls := 0
	var mu sync.Mutex
	thirdFails := func(ctx context.Context, traces []byte) (*wirepb.ProcessTracesResponse, error) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 3 {
			return nil, status.Error(codes.Internal, "plugin crashed")
		}
		return tagSpans(ctx, traces)
	}
	p := startProcessor(t, cfg, &fakeSidecar{process: thirdFails})
	td := generateTraces(2, 2, 50, 200)
	want := protoBytes(t, td)

	require.NoError(t, p.ConsumeTraces(context.Background(), td))

	require.Len(t, p.sink.AllTraces(), 1)
	assert.Equal(t, want, protoBytes(t, p.sink.AllTraces()[0]), "no span carries a half-applied plugin")
	metadatatest.AssertEqualProcessorPythonRequestsSent(t, p.tt, points(3), metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualProcessorPythonSpansPassedUnchanged(t, p.tt, points(int64(td.SpanCount())), metricdatatest.IgnoreTimestamp())
	assertFailed(t, p, "plugin_error")
}

func TestFactory(t *testing.T) {
	f := NewFactory()
	assert.Equal(t, metadata.Type, f.Type())
	assert.Equal(t, metadata.TracesStability, f.TracesStability())
	proc, err := f.CreateTraces(context.Background(), processorSettings(), testConfig(), consumertest.NewNop())
	require.NoError(t, err)
	assert.True(t, proc.Capabilities().MutatesData, "the plugin's answer replaces the batch")
}
