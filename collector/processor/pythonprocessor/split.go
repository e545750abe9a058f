package pythonprocessor // import "github.com/spancost/spancost/collector/processor/pythonprocessor"

import "go.opentelemetry.io/collector/pdata/ptrace"

// splitTraces cuts td into parts whose encoding is at most maxBytes, halving
// resources, then scopes, then spans, so no part is larger than it must be
// and every span lands in exactly one part. td itself is returned when it
// fits; otherwise the parts are copies and td is left as it was. A single span
// larger than maxBytes cannot be cut and travels alone.
func splitTraces(td ptrace.Traces, maxBytes int, sizer *ptrace.ProtoMarshaler) []ptrace.Traces {
	if sizer.TracesSize(td) <= maxBytes {
		return []ptrace.Traces{td}
	}
	left, right, ok := halve(td)
	if !ok {
		return []ptrace.Traces{td}
	}
	return append(splitTraces(left, maxBytes, sizer), splitTraces(right, maxBytes, sizer)...)
}

// halve copies td into two parts of about half its items each, or reports
// false when td holds a single span.
func halve(td ptrace.Traces) (ptrace.Traces, ptrace.Traces, bool) {
	rss := td.ResourceSpans()
	if n := rss.Len(); n > 1 {
		return resourceRange(rss, 0, n/2), resourceRange(rss, n/2, n), true
	}
	if rss.Len() == 0 {
		return td, td, false
	}
	rs := rss.At(0)
	if n := rs.ScopeSpans().Len(); n > 1 {
		return scopeRange(rs, 0, n/2), scopeRange(rs, n/2, n), true
	}
	if rs.ScopeSpans().Len() == 0 {
		return td, td, false
	}
	ss := rs.ScopeSpans().At(0)
	if n := ss.Spans().Len(); n > 1 {
		return spanRange(rs, ss, 0, n/2), spanRange(rs, ss, n/2, n), true
	}
	return td, td, false
}

func resourceRange(rss ptrace.ResourceSpansSlice, from, to int) ptrace.Traces {
	out := ptrace.NewTraces()
	dst := out.ResourceSpans()
	dst.EnsureCapacity(to - from)
	for i := from; i < to; i++ {
		rss.At(i).CopyTo(dst.AppendEmpty())
	}
	return out
}

// emptyResource copies rs without its scopes into a new Traces.
func emptyResource(rs ptrace.ResourceSpans) (ptrace.Traces, ptrace.ResourceSpans) {
	out := ptrace.NewTraces()
	dst := out.ResourceSpans().AppendEmpty()
	rs.Resource().CopyTo(dst.Resource())
	dst.SetSchemaUrl(rs.SchemaUrl())
	return out, dst
}

func scopeRange(rs ptrace.ResourceSpans, from, to int) ptrace.Traces {
	out, dst := emptyResource(rs)
	for i := from; i < to; i++ {
		rs.ScopeSpans().At(i).CopyTo(dst.ScopeSpans().AppendEmpty())
	}
	return out
}

func spanRange(rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, from, to int) ptrace.Traces {
	out, dstRS := emptyResource(rs)
	dst := dstRS.ScopeSpans().AppendEmpty()
	ss.Scope().CopyTo(dst.Scope())
	dst.SetSchemaUrl(ss.SchemaUrl())
	spans := dst.Spans()
	spans.EnsureCapacity(to - from)
	for i := from; i < to; i++ {
		ss.Spans().At(i).CopyTo(spans.AppendEmpty())
	}
	return out
}
