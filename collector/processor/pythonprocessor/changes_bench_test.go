package pythonprocessor

import (
	"fmt"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/spancost/spancost/collector/internal/wirepb"
)

// costBatch is the batch of bench_cost_plugin.py: 1,000 spans in 20
// resources, traces of 10 spans, 8 attributes per span.
func costBatch() ptrace.Traces {
	td := ptrace.NewTraces()
	n := 0
	for r := range 20 {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("service-%d", r))
		spans := rs.ScopeSpans().AppendEmpty().Spans()
		for range 50 {
			n++
			span := spans.AppendEmpty()
			span.SetSpanID(spanID(n))
			span.SetName("GET /items")
			attrs := span.Attributes()
			attrs.PutStr("http.request.method", "GET")
			attrs.PutStr("http.route", "/items/{id}")
			attrs.PutInt("http.response.status_code", 200)
			attrs.PutStr("server.address", "items.internal")
			attrs.PutInt("server.port", 8080)
			attrs.PutStr("url.scheme", "https")
			attrs.PutStr("network.protocol.version", "1.1")
			attrs.PutDouble("sampling.ratio", 1)
		}
	}
	return td
}

// costChanges is what spancost.cost answers for costBatch: per resource the
// base cost attributes on its range (after removing them, when removeFirst),
// the local roots' model on listed spans and their cost.usd in a column.
func costChanges(removeFirst bool) *wirepb.BatchChanges {
	ch := &wirepb.BatchChanges{}
	usd := &wirepb.DoubleColumn{Key: "cost.usd"}
	for r := range uint32(20) {
		start, end := r*50, r*50+50
		if removeFirst {
			ch.Attributes = append(ch.Attributes, &wirepb.AttributeChange{
				Start: start, End: end,
				Remove: []string{"cost.usd", "cost.model", "cost.source", "cost.price_as_of", "cost.unit"},
			})
		}
		ch.Attributes = append(ch.Attributes, &wirepb.AttributeChange{Start: start, End: end, Set: []*wirepb.Attribute{
			{Key: "cost.usd", Value: &wirepb.Attribute_DoubleValue{DoubleValue: 0}},
			{Key: "cost.model", Value: &wirepb.Attribute_StringValue{StringValue: "included"}},
			{Key: "cost.source", Value: &wirepb.Attribute_StringValue{StringValue: "config"}},
			{Key: "cost.price_as_of", Value: &wirepb.Attribute_StringValue{StringValue: "2026-11-29"}},
			{Key: "cost.unit", Value: &wirepb.Attribute_StringValue{StringValue: "request"}},
		}})
		roots := &wirepb.AttributeChange{Start: start, End: end, Set: []*wirepb.Attribute{
			{Key: "cost.model", Value: &wirepb.Attribute_StringValue{StringValue: "duration"}},
		}}
		for i := start; i < end; i += 10 {
			roots.Spans = append(roots.Spans, i)
			usd.Spans = append(usd.Spans, i)
			usd.Values = append(usd.Values, 1e-6*float64(i))
		}
		ch.Attributes = append(ch.Attributes, roots)
	}
	ch.Doubles = []*wirepb.DoubleColumn{usd}
	return ch
}

func benchmarkApplyChanges(b *testing.B, ch *wirepb.BatchChanges, prepare func(ptrace.Traces)) {
	src := costBatch()
	if prepare != nil {
		prepare(src)
	}
	// Fresh copies are made with the timer stopped, a pool at a time: stopping
	// it for every batch would cost more than the batch.
	pool := make([]ptrace.Traces, 32)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%len(pool) == 0 {
			b.StopTimer()
			for j := range pool {
				pool[j] = ptrace.NewTraces()
				src.CopyTo(pool[j])
			}
			b.StartTimer()
		}
		if err := applyChanges(pool[i%len(pool)], ch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(src.SpanCount()), "ns/span")
}

// BenchmarkApplyChangesCost: the answer of spancost.cost on a fresh batch.
func BenchmarkApplyChangesCost(b *testing.B) {
	benchmarkApplyChanges(b, costChanges(false), nil)
}

// BenchmarkApplyChangesCostAgain: the batch already carries cost attributes
// (a second pass), which the answer removes first.
func BenchmarkApplyChangesCostAgain(b *testing.B) {
	ch := costChanges(true)
	benchmarkApplyChanges(b, ch, func(td ptrace.Traces) {
		if err := applyChanges(td, costChanges(false)); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkApplyChangesOverwrite: every set finds its key already there
// (no remove first), so each one also looks for later copies.
func BenchmarkApplyChangesOverwrite(b *testing.B) {
	benchmarkApplyChanges(b, costChanges(false), func(td ptrace.Traces) {
		if err := applyChanges(td, costChanges(false)); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkApplyChangesUntouched: a drop-only answer, attributes not read.
func BenchmarkApplyChangesUntouched(b *testing.B) {
	benchmarkApplyChanges(b, &wirepb.BatchChanges{Drop: []*wirepb.SpanRange{{Start: 0, End: 10}}}, nil)
}

// BenchmarkRemoveLaterCopies: the look for copies after a set found its key
// already there, on a span of 13 attributes without one.
func BenchmarkRemoveLaterCopies(b *testing.B) {
	attrs := costBatch().ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes()
	for _, k := range []string{"cost.usd", "cost.model", "cost.source", "cost.price_as_of", "cost.unit"} {
		attrs.PutStr(k, "v")
	}
	b.ReportAllocs()
	for b.Loop() {
		removeLaterCopies(attrs, "http.route")
	}
}

// benchmarkSpanChanges applies changes to one span of costBatch, over and
// over: each round leaves the span as it found it, so no copy is needed and
// the figure is steadier than the whole batch's.
func benchmarkSpanChanges(b *testing.B, changes ...*wirepb.AttributeChange) {
	attrs := costBatch().ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(0).Attributes()
	for _, c := range changes {
		applyAttributeChange(attrs, c, 0)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range changes {
			applyAttributeChange(attrs, c, 0)
		}
	}
}

// BenchmarkSpanRemoveThenSet: spancost.cost on a span that already carries
// its five attributes (removes them, sets them again).
func BenchmarkSpanRemoveThenSet(b *testing.B) {
	ch := costChanges(true)
	benchmarkSpanChanges(b, ch.Attributes[0], ch.Attributes[1])
}

// BenchmarkSpanOverwrite: five sets, each finding its key already there.
func BenchmarkSpanOverwrite(b *testing.B) {
	benchmarkSpanChanges(b, costChanges(false).Attributes[0])
}
