package pythonprocessor

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// generateTraces builds resources x scopes x spans spans, each with an
// attribute of attrBytes bytes. Span IDs count up from 1 in order.
func generateTraces(resources, scopes, spans, attrBytes int) ptrace.Traces {
	shape := make([][]int, resources)
	for i := range shape {
		shape[i] = make([]int, scopes)
		for j := range shape[i] {
			shape[i][j] = spans
		}
	}
	return buildTraces(shape, func(int) int { return attrBytes })
}

// buildTraces builds traces with len(shape) resources, shape[i][j] spans in
// scope j of resource i, and span n carrying an attribute of attrBytes(n) bytes.
func buildTraces(shape [][]int, attrBytes func(n int) int) ptrace.Traces {
	td := ptrace.NewTraces()
	n := 0
	for i, scopes := range shape {
		rs := td.ResourceSpans().AppendEmpty()
		rs.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
		rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("service-%d", i))
		for j, spans := range scopes {
			ss := rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(fmt.Sprintf("scope-%d-%d", i, j))
			ss.Scope().SetVersion("1.0.0")
			for range spans {
				n++
				span := ss.Spans().AppendEmpty()
				span.SetTraceID(pcommon.TraceID{byte(i), byte(j), 1})
				span.SetSpanID(spanID(n))
				span.SetName(fmt.Sprintf("span-%d", n))
				span.SetStartTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000 + n))
				span.SetEndTimestamp(pcommon.Timestamp(1_700_000_000_000_000_000 + 2*n))
				span.Attributes().PutStr("payload", strings.Repeat("x", attrBytes(n)))
			}
		}
	}
	return td
}

func spanID(n int) pcommon.SpanID {
	var id pcommon.SpanID
	binary.BigEndian.PutUint64(id[:], uint64(n))
	return id
}

func forEachSpan(td ptrace.Traces, f func(ptrace.Span)) {
	forEachSpanIn(td, func(_ ptrace.ResourceSpans, _ ptrace.ScopeSpans, span ptrace.Span) { f(span) })
}

func forEachSpanIn(td ptrace.Traces, f func(ptrace.ResourceSpans, ptrace.ScopeSpans, ptrace.Span)) {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				f(rss.At(i), sss.At(j), spans.At(k))
			}
		}
	}
}

func spanIDs(td ptrace.Traces) []pcommon.SpanID {
	var ids []pcommon.SpanID
	forEachSpan(td, func(span ptrace.Span) { ids = append(ids, span.SpanID()) })
	return ids
}

// spanContext is what a span inherits from its resource and scope.
func spanContexts(td ptrace.Traces) map[pcommon.SpanID]string {
	out := map[pcommon.SpanID]string{}
	forEachSpanIn(td, func(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, span ptrace.Span) {
		out[span.SpanID()] = fmt.Sprintf("%v %s %s %s %s", rs.Resource().Attributes().AsRaw(), rs.SchemaUrl(),
			ss.Scope().Name(), ss.Scope().Version(), ss.SchemaUrl())
	})
	return out
}

// checkSplit asserts the invariants of splitTraces on td.
func checkSplit(t *testing.T, td ptrace.Traces, maxBytes int) []ptrace.Traces {
	t.Helper()
	sizer := &ptrace.ProtoMarshaler{}
	before, err := sizer.MarshalTraces(td)
	require.NoError(t, err)

	parts := splitTraces(td, maxBytes, sizer)

	after, err := sizer.MarshalTraces(td)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the input is left as it was")
	require.NotEmpty(t, parts)
	if len(before) <= maxBytes {
		assert.Len(t, parts, 1, "a batch that fits is not split")
	}

	var ids []pcommon.SpanID
	contexts := map[pcommon.SpanID]string{}
	spans := 0
	for i, part := range parts {
		size := sizer.TracesSize(part)
		if part.SpanCount() > 1 {
			assert.LessOrEqual(t, size, maxBytes, "part %d of %d holds %d spans", i, len(parts), part.SpanCount())
		}
		spans += part.SpanCount()
		ids = append(ids, spanIDs(part)...)
		for id, c := range spanContexts(part) {
			contexts[id] = c
		}
	}
	assert.Equal(t, td.SpanCount(), spans)
	assert.Equal(t, spanIDs(td), ids, "every span exactly once, in order")
	assert.Equal(t, spanContexts(td), contexts, "every span keeps its resource and scope")
	return parts
}

func TestSplitTracesProperties(t *testing.T) {
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 0x5ba2c057))
		shape := make([][]int, 1+r.IntN(5))
		for i := range shape {
			shape[i] = make([]int, r.IntN(4)) // a resource may have no scopes
			for j := range shape[i] {
				shape[i][j] = r.IntN(60) // nor a scope spans
			}
		}
		// Mostly small spans, a few large ones, now and then one over any limit.
		attrBytes := func(int) int {
			switch x := r.IntN(100); {
			case x < 80:
				return r.IntN(300)
			case x < 98:
				return 1000 + r.IntN(8000)
			default:
				return 40_000
			}
		}
		td := buildTraces(shape, attrBytes)
		size := (&ptrace.ProtoMarshaler{}).TracesSize(td)
		for _, maxBytes := range []int{1, 512, 4096, 16 << 10, size/3 + 1, size, size + 1} {
			t.Run(fmt.Sprintf("seed=%d/max=%d", seed, maxBytes), func(t *testing.T) {
				checkSplit(t, td, maxBytes)
			})
		}
	}
}

func TestSplitTracesEdges(t *testing.T) {
	t.Run("empty", func(t *testing.T) {
		parts := checkSplit(t, ptrace.NewTraces(), 1)
		assert.Equal(t, 0, parts[0].SpanCount())
	})
	t.Run("fits", func(t *testing.T) {
		td := generateTraces(2, 2, 2, 10)
		parts := checkSplit(t, td, 1<<20)
		require.Len(t, parts, 1)
		// The batch itself, not a copy: nothing to pay when no split is needed.
		parts[0].ResourceSpans().At(0).Resource().Attributes().PutStr("marker", "same")
		_, ok := td.ResourceSpans().At(0).Resource().Attributes().Get("marker")
		assert.True(t, ok)
	})
	t.Run("one span larger than the limit travels alone", func(t *testing.T) {
		td := buildTraces([][]int{{3}}, func(n int) int {
			if n == 2 {
				return 10_000
			}
			return 10
		})
		parts := checkSplit(t, td, 1000)
		require.Len(t, parts, 3)
		assert.Equal(t, []pcommon.SpanID{spanID(2)}, spanIDs(parts[1]))
	})
	t.Run("resources without spans", func(t *testing.T) {
		td := buildTraces([][]int{{}, {0, 0}, {5}, {}}, func(int) int { return 100 })
		checkSplit(t, td, 300)
	})
	t.Run("scope schema kept", func(t *testing.T) {
		td := generateTraces(1, 1, 4, 100)
		td.ResourceSpans().At(0).ScopeSpans().At(0).SetSchemaUrl("https://example.com/scope-schema")
		parts := checkSplit(t, td, 300)
		require.Greater(t, len(parts), 1)
		for _, part := range parts {
			assert.Equal(t, "https://example.com/scope-schema", part.ResourceSpans().At(0).ScopeSpans().At(0).SchemaUrl())
		}
	})
}
