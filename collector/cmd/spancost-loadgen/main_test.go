package main

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Every request a pool sends decodes to the shape asked for, and no trace or
// span ID repeats across rounds of the pool.
func TestRequestPoolSendsFreshIDs(t *testing.T) {
	const requests, batch, traceSize = 3, 20, 5
	pool := newRequestPool(requests, batch, traceSize, "prod")
	var u ptrace.ProtoUnmarshaler
	spans := map[[8]byte]bool{}
	traces := map[[16]byte]bool{}
	for sent := 0; sent < 3*requests; sent++ {
		td, err := u.UnmarshalTraces(pool.next())
		if err != nil {
			t.Fatalf("request %d does not decode: %v", sent, err)
		}
		if got := td.SpanCount(); got != batch {
			t.Fatalf("request %d has %d spans, want %d", sent, got, batch)
		}
		ss := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
		for i := 0; i < ss.Len(); i++ {
			s := ss.At(i)
			if spans[s.SpanID()] {
				t.Fatalf("request %d: span ID %x sent before", sent, s.SpanID())
			}
			spans[s.SpanID()] = true
			if i%traceSize == 0 {
				if traces[s.TraceID()] {
					t.Fatalf("request %d: trace ID %x sent before", sent, s.TraceID())
				}
				traces[s.TraceID()] = true
				if !s.ParentSpanID().IsEmpty() {
					t.Fatalf("request %d: span %d should be a root", sent, i)
				}
				continue
			}
			root := ss.At(i - i%traceSize)
			if s.ParentSpanID() != root.SpanID() || s.TraceID() != root.TraceID() {
				t.Fatalf("request %d: span %d is not a child of its trace's root", sent, i)
			}
		}
	}
	if len(traces) != 3*requests*batch/traceSize {
		t.Fatalf("%d distinct traces, want %d", len(traces), 3*requests*batch/traceSize)
	}
}
