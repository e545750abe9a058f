package pythonprocessor

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/spancost/spancost/collector/internal/wirepb"
	"github.com/spancost/spancost/collector/processor/pythonprocessor/internal/metadatatest"
)

// costOwnership is what spancost.cost declares (plugins/cost.py).
func costOwnership(trustedKey string) *wirepb.Ownership {
	return &wirepb.Ownership{
		Keys:             []string{"cost.usd", "cost.currency", "cost.source", "cost.unpriced_reason"},
		Unprocessed:      []*wirepb.Attribute{{Key: "cost.unpriced_reason", Value: &wirepb.Attribute_StringValue{StringValue: "sidecar_unavailable"}}},
		UnprocessedEvent: &wirepb.PluginEvent{Event: "unpriced", Reason: "sidecar_unavailable"},
		TrustedKey:       trustedKey,
	}
}

// forgedSpan appends a span carrying a sender's cost.usd twice (raw OTLP
// allows a repeated key; pdata's Put* never makes one, so it comes off the
// wire, as from a receiver), its own cost.source and an attribute of its own.
func forgedSpan(t *testing.T, spans ptrace.SpanSlice, name string) {
	t.Helper()
	td := decodeSpan(t, name,
		rawAttr{"cost.usd", doubleValue(5000)},
		rawAttr{"http.route", stringValue("/checkout")},
		rawAttr{"cost.source", stringValue("client")},
		rawAttr{"cost.usd", doubleValue(5000)})
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).CopyTo(spans.AppendEmpty())
}

// rawAttr is one OTLP KeyValue, its AnyValue already encoded.
type rawAttr struct {
	key   string
	value []byte
}

func doubleValue(v float64) []byte {
	return protowire.AppendFixed64(protowire.AppendTag(nil, 4, protowire.Fixed64Type), math.Float64bits(v))
}

func stringValue(v string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), v)
}

// decodeSpan decodes a TracesData holding one span named name with the
// attributes attrs, in that order, repeats included.
func decodeSpan(t *testing.T, name string, attrs ...rawAttr) ptrace.Traces {
	t.Helper()
	message := func(b []byte, field protowire.Number, body []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, field, protowire.BytesType), body)
	}
	var span []byte
	span = message(span, 5, []byte(name)) // name
	for _, a := range attrs {
		var kv []byte
		kv = message(kv, 1, []byte(a.key))
		kv = message(kv, 2, a.value)
		span = message(span, 9, kv) // attributes
	}
	scope := message(nil, 2, span)     // ScopeSpans.spans
	resource := message(nil, 2, scope) // ResourceSpans.scope_spans
	data := message(nil, 1, resource)  // TracesData.resource_spans
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(data)
	require.NoError(t, err)
	return td
}

// rawKeys are the keys of a span's attributes in wire order, repeats included.
func rawKeys(t *testing.T, span ptrace.Span) []string {
	t.Helper()
	var keys []string
	span.Attributes().Range(func(k string, _ pcommon.Value) bool {
		keys = append(keys, k)
		return true
	})
	return keys
}

func TestPassRemovesWhatThePluginOwns(t *testing.T) {
	for _, failure := range []struct {
		name    string
		process func(context.Context, []byte) (*wirepb.ProcessTracesResponse, error)
	}{
		{"unavailable", failWith(status.Error(codes.Unavailable, "connection refused"))},
		{"timeout", failWith(status.Error(codes.DeadlineExceeded, "deadline"))},
		{"plugin error", failWith(status.Error(codes.Internal, "boom"))},
		{"bad answer", answer(&wirepb.ProcessTracesResponse{Result: &wirepb.ProcessTracesResponse_Changes{Changes: &wirepb.BatchChanges{Drop: []*wirepb.SpanRange{{Start: 0, End: 99}}}}})},
	} {
		t.Run(failure.name, func(t *testing.T) {
			p := startProcessor(t, testConfig(), &fakeSidecar{process: failure.process, ownership: costOwnership("")})
			td := ptrace.NewTraces()
			spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
			forgedSpan(t, spans, "a")
			plain := spans.AppendEmpty()
			plain.SetName("b")
			require.Equal(t, []string{"cost.usd", "http.route", "cost.source", "cost.usd"}, rawKeys(t, spans.At(0)), "the test sends a repeated key")

			require.NoError(t, p.ConsumeTraces(context.Background(), td))

			require.Len(t, p.sink.AllTraces(), 1)
			out := p.sink.AllTraces()[0].ResourceSpans().At(0).ScopeSpans().At(0).Spans()
			require.Equal(t, 2, out.Len(), "no span is lost")
			for i, want := range [][]string{{"http.route", "cost.unpriced_reason"}, {"cost.unpriced_reason"}} {
				span := out.At(i)
				assert.Equal(t, want, rawKeys(t, span), "span %d: no copy of an owned key is left", i)
				reason, _ := span.Attributes().Get("cost.unpriced_reason")
				assert.Equal(t, "sidecar_unavailable", reason.Str())
			}
			metadatatest.AssertEqualProcessorPythonPluginEvents(t, p.tt,
				points(2, attribute.String("event", "unpriced"), attribute.String("reason", "sidecar_unavailable")),
				metricdatatest.IgnoreTimestamp())
			metadatatest.AssertEqualProcessorPythonSpansPassedUnchanged(t, p.tt, points(2), metricdatatest.IgnoreTimestamp())
		})
	}
}

func TestPassWithoutOwnershipForwardsUnchanged(t *testing.T) {
	p := startProcessor(t, testConfig(), &fakeSidecar{process: failWith(status.Error(codes.Unavailable, "down"))})
	td := ptrace.NewTraces()
	forgedSpan(t, td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans(), "a")
	want := protoBytes(t, td)

	require.NoError(t, p.ConsumeTraces(context.Background(), td))

	require.Len(t, p.sink.AllTraces(), 1)
	assert.Equal(t, want, protoBytes(t, p.sink.AllTraces()[0]), "a plugin that owns nothing: the batch goes on as it came")
}

func TestRejectLeavesTheBatchToTheSender(t *testing.T) {
	cfg := testConfig()
	cfg.OnError = OnErrorReject
	p := startProcessor(t, cfg, &fakeSidecar{process: failWith(status.Error(codes.Unavailable, "down")), ownership: costOwnership("")})
	td := ptrace.NewTraces()
	forgedSpan(t, td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans(), "a")
	want := protoBytes(t, td)

	require.Error(t, p.ConsumeTraces(context.Background(), td))

	assert.Empty(t, p.sink.AllTraces(), "nothing goes on")
	assert.Equal(t, want, protoBytes(t, td), "the sender retries the batch as it sent it")
}

func TestPassKeepsTrustedUpstreamPrices(t *testing.T) {
	p := startProcessor(t, testConfig(), &fakeSidecar{process: failWith(status.Error(codes.Unavailable, "down")), ownership: costOwnership("cost.usd")})
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	values := []pcommon.Value{
		pcommon.NewValueDouble(0.25),                 // an agent's price: kept
		pcommon.NewValueDouble(0),                    // kept
		pcommon.NewValueDouble(math.Copysign(0, -1)), // -0.0 >= 0: kept, as in Python
		pcommon.NewValueDouble(-1),                   // not a price
		pcommon.NewValueDouble(math.NaN()),           // not a price
		pcommon.NewValueDouble(math.Inf(1)),          // not a price
		pcommon.NewValueStr("0.25"),                  // not a double
	}
	for _, v := range values {
		span := spans.AppendEmpty()
		v.CopyTo(span.Attributes().PutEmpty("cost.usd"))
		span.Attributes().PutStr("cost.source", "bundled")
	}
	spans.AppendEmpty() // no price at all

	require.NoError(t, p.ConsumeTraces(context.Background(), td))

	out := p.sink.AllTraces()[0].ResourceSpans().At(0).ScopeSpans().At(0).Spans()
	var kept []int
	for i := 0; i < out.Len(); i++ {
		keys := strings.Join(rawKeys(t, out.At(i)), ",")
		if keys == "cost.usd,cost.source" {
			kept = append(kept, i)
		} else {
			assert.Equal(t, "cost.unpriced_reason", keys, "span %d", i)
		}
	}
	assert.Equal(t, []int{0, 1, 2}, kept)
}

func TestPassStripsEveryPartOfASplitBatch(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRequestBytes = minRequestBytes
	calls := 0
	// The first part is answered, the second fails: the whole batch is forwarded
	// without any change, owned attributes removed from every span.
	process := func(_ context.Context, traces []byte) (*wirepb.ProcessTracesResponse, error) {
		calls++
		if calls == 1 {
			return fullAnswer(traces), nil
		}
		return nil, status.Error(codes.Unavailable, "down")
	}
	p := startProcessor(t, cfg, &fakeSidecar{process: process, ownership: costOwnership("")})
	td := generateTraces(4, 2, 8, 512)
	td.ResourceSpans().At(3).ScopeSpans().At(1).Spans().At(7).Attributes().PutDouble("cost.usd", 5000)
	td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes().PutDouble("cost.usd", 5000)
	n := td.SpanCount()

	require.NoError(t, p.ConsumeTraces(context.Background(), td))

	require.Greater(t, calls, 1, "the batch was split")
	require.Len(t, p.sink.AllTraces(), 1)
	out := p.sink.AllTraces()[0]
	require.Equal(t, n, out.SpanCount())
	rss := out.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		for j := 0; j < rss.At(i).ScopeSpans().Len(); j++ {
			spans := rss.At(i).ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				_, has := spans.At(k).Attributes().Get("cost.usd")
				assert.False(t, has)
				reason, _ := spans.At(k).Attributes().Get("cost.unpriced_reason")
				assert.Equal(t, "sidecar_unavailable", reason.Str())
			}
		}
	}
}
