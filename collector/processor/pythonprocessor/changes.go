package pythonprocessor // import "github.com/spancost/spancost/collector/processor/pythonprocessor"

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/spancost/spancost/collector/internal/wirepb"
)

// applyChanges applies a plugin's fast-form answer to td in place, the way
// python_processor/src/spancost/changes.py documents (and implements, as the
// reference): attribute changes in order of start (each on its range, or on
// its listed spans), then double columns, then drops, removing a scope or
// resource that held spans and holds none afterwards. It checks the
// whole answer first and changes nothing when any of it is wrong.
//
// A span may carry a key more than once (OTLP forbids it, the wire does not):
// a remove takes away every copy; a set, or a column's entry, leaves exactly
// one attribute of its key, the first copy in its place with the new value
// and type (later copies removed), or appends the key when it is absent. The
// other attributes keep their order, and a span no change names is not
// touched at all.
func applyChanges(td ptrace.Traces, ch *wirepb.BatchChanges) error {
	total := td.SpanCount()
	if err := checkChanges(ch, total); err != nil {
		return err
	}
	if len(ch.GetAttributes()) > 0 || len(ch.GetDoubles()) > 0 {
		applyAttributes(td, ch.GetAttributes(), ch.GetDoubles())
	}
	if len(ch.GetDrop()) > 0 {
		applyDrops(td, mergeRanges(ch.GetDrop()))
	}
	return nil
}

func checkChanges(ch *wirepb.BatchChanges, total int) error {
	if ch == nil {
		return errors.New("empty answer")
	}
	var prevStart uint32
	for i, c := range ch.GetAttributes() {
		if err := checkRange(c.GetStart(), c.GetEnd(), total); err != nil {
			return fmt.Errorf("attributes[%d]: %w", i, err)
		}
		if c.GetStart() < prevStart {
			return fmt.Errorf("attributes[%d]: start %d comes after start %d; changes must be in order of start", i, c.GetStart(), prevStart)
		}
		prevStart = c.GetStart()
		if err := checkSpans(c.GetSpans(), c.GetStart(), c.GetEnd()); err != nil {
			return fmt.Errorf("attributes[%d].spans: %w", i, err)
		}
		for j, a := range c.GetSet() {
			if a.GetKey() == "" {
				return fmt.Errorf("attributes[%d].set[%d]: empty key", i, j)
			}
			if a.GetValue() == nil {
				return fmt.Errorf("attributes[%d].set[%d]: attribute %q has no value", i, j, a.GetKey())
			}
		}
	}
	for i, col := range ch.GetDoubles() {
		if col.GetKey() == "" {
			return fmt.Errorf("doubles[%d]: empty key", i)
		}
		if len(col.GetSpans()) != len(col.GetValues()) {
			return fmt.Errorf("doubles[%d]: %d spans but %d values", i, len(col.GetSpans()), len(col.GetValues()))
		}
		if err := checkSpans(col.GetSpans(), 0, uint32(total)); err != nil {
			return fmt.Errorf("doubles[%d].spans: %w", i, err)
		}
	}
	for i, r := range ch.GetDrop() {
		if err := checkRange(r.GetStart(), r.GetEnd(), total); err != nil {
			return fmt.Errorf("drop[%d]: %w", i, err)
		}
	}
	return nil
}

// checkSpans checks that spans ascend strictly within [start, end).
func checkSpans(spans []uint32, start, end uint32) error {
	for j, span := range spans {
		if span < start || span >= end {
			return fmt.Errorf("span %d is outside [%d, %d)", span, start, end)
		}
		if j > 0 && span <= spans[j-1] {
			return fmt.Errorf("span %d does not come after span %d", span, spans[j-1])
		}
	}
	return nil
}

func checkRange(start, end uint32, total int) error {
	if start > end || int(end) > total {
		return fmt.Errorf("span range [%d, %d) is outside the batch's %d spans", start, end, total)
	}
	return nil
}

// activeChange is an attribute change being applied; next walks its span
// list when it has one.
type activeChange struct {
	change *wirepb.AttributeChange
	next   int
}

// appliesTo reports whether the change applies to span index, advancing
// through its span list (indexes only grow).
func (a *activeChange) appliesTo(index uint32) bool {
	spans := a.change.GetSpans()
	if len(spans) == 0 {
		return true
	}
	for a.next < len(spans) && spans[a.next] < index {
		a.next++
	}
	return a.next < len(spans) && spans[a.next] == index
}

func applyAttributes(td ptrace.Traces, changes []*wirepb.AttributeChange, doubles []*wirepb.DoubleColumn) {
	var active, applying []*activeChange
	var keys []string // the keys the changes for one span put
	next := 0
	columns := make([]int, len(doubles)) // the next entry of each column
	index := uint32(0)
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				for next < len(changes) && changes[next].GetStart() <= index {
					active = append(active, &activeChange{change: changes[next]})
					next++
				}
				active = slices.DeleteFunc(active, func(a *activeChange) bool { return a.change.GetEnd() <= index })
				// What applies to this span, and the keys it puts: the map then grows
				// once, not once per doubling (most of what putting the cost
				// attributes on a span allocated).
				applying, keys = applying[:0], keys[:0]
				for _, a := range active {
					if a.appliesTo(index) {
						applying = append(applying, a)
						for _, set := range a.change.GetSet() {
							keys = appendNew(keys, set.GetKey())
						}
					}
				}
				for c, col := range doubles {
					if n := columns[c]; n < len(col.GetSpans()) && col.GetSpans()[n] == index {
						keys = appendNew(keys, col.GetKey())
					}
				}
				if len(keys) == 0 && len(applying) == 0 {
					index++
					continue
				}
				attrs := spans.At(k).Attributes()
				reserve := 0 // keys not there yet: room is made for them after the first removes
				for _, key := range keys {
					if _, ok := attrs.Get(key); !ok {
						reserve++
					}
				}
				for _, a := range applying {
					applyAttributeChange(attrs, a.change, reserve)
					reserve = 0
				}
				if reserve > 0 {
					attrs.EnsureCapacity(attrs.Len() + reserve)
				}
				for c, col := range doubles {
					if n := columns[c]; n < len(col.GetSpans()) && col.GetSpans()[n] == index {
						putDouble(attrs, col.GetKey(), col.GetValues()[n])
						columns[c]++
					}
				}
				index++
			}
		}
	}
}

// applyAttributeChange applies c to one span's attributes: its removes, then
// its sets (see setAttribute), with room made first for reserve more keys. A removed key loses every copy, and the other
// attributes keep their order (pcommon's Map.Remove would stop at the first
// copy and move the last attribute into its place).
func applyAttributeChange(attrs pcommon.Map, c *wirepb.AttributeChange, reserve int) {
	if remove := c.GetRemove(); len(remove) > 0 {
		attrs.RemoveIf(func(key string, _ pcommon.Value) bool { return slices.Contains(remove, key) })
	}
	if reserve > 0 {
		attrs.EnsureCapacity(attrs.Len() + reserve)
	}
	for _, a := range c.GetSet() {
		setAttribute(attrs, a)
	}
}

// setAttribute leaves exactly one attribute of a's key: the first copy, in
// its place, takes a's value and type, and later copies are removed; an absent
// key is appended. OTLP asks for unique keys but the wire does not enforce
// them, so a client may send a key twice (a second cost.usd, say); the Python
// reference (spancost.changes) does the same.
func setAttribute(attrs pcommon.Map, a *wirepb.Attribute) {
	n := attrs.Len()
	switch v := a.GetValue().(type) {
	case *wirepb.Attribute_StringValue:
		attrs.PutStr(a.GetKey(), v.StringValue)
	case *wirepb.Attribute_BoolValue:
		attrs.PutBool(a.GetKey(), v.BoolValue)
	case *wirepb.Attribute_IntValue:
		attrs.PutInt(a.GetKey(), v.IntValue)
	case *wirepb.Attribute_DoubleValue:
		attrs.PutDouble(a.GetKey(), v.DoubleValue)
	}
	if attrs.Len() == n {
		removeLaterCopies(attrs, a.GetKey())
	}
}

// putDouble is setAttribute for a double column's entry.
func putDouble(attrs pcommon.Map, key string, v float64) {
	n := attrs.Len()
	attrs.PutDouble(key, v)
	if attrs.Len() == n {
		removeLaterCopies(attrs, key)
	}
}

// removeLaterCopies removes every attribute named key but the first. Its
// callers look only when Put* did not grow the map (Put* appends a key it did
// not find), so a new key costs no second scan. The scan allocates nothing
// (the closures stay on the stack) and reads before it writes, as a repeated
// key is rare: BenchmarkRemoveLaterCopies (13 attributes, no copy) takes 17
// ns, against 31 ns for the RemoveIf alone.
func removeLaterCopies(attrs pcommon.Map, key string) {
	copies := 0
	attrs.Range(func(k string, _ pcommon.Value) bool {
		if k == key {
			copies++
		}
		return copies < 2
	})
	if copies < 2 {
		return
	}
	seen := false
	attrs.RemoveIf(func(k string, _ pcommon.Value) bool {
		if k != key {
			return false
		}
		later := seen
		seen = true
		return later
	})
}

// appendNew appends key to keys unless it is there already.
func appendNew(keys []string, key string) []string {
	if slices.Contains(keys, key) {
		return keys
	}
	return append(keys, key)
}

type dropRange struct{ start, end uint32 }

// mergeRanges sorts the drop ranges and merges overlapping ones.
func mergeRanges(drops []*wirepb.SpanRange) []dropRange {
	ranges := make([]dropRange, 0, len(drops))
	for _, r := range drops {
		if r.GetStart() < r.GetEnd() {
			ranges = append(ranges, dropRange{r.GetStart(), r.GetEnd()})
		}
	}
	slices.SortFunc(ranges, func(a, b dropRange) int { return cmp.Compare(a.start, b.start) })
	merged := ranges[:0]
	for _, r := range ranges {
		if n := len(merged); n > 0 && r.start <= merged[n-1].end {
			merged[n-1].end = max(merged[n-1].end, r.end)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

func applyDrops(td ptrace.Traces, ranges []dropRange) {
	index := uint32(0)
	cur := 0
	dropped := func() bool {
		for cur < len(ranges) && ranges[cur].end <= index {
			cur++
		}
		d := cur < len(ranges) && ranges[cur].start <= index
		index++
		return d
	}
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		heldSpans, holdsSpans := false, false
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			if ss.Spans().Len() == 0 {
				return false
			}
			heldSpans = true
			ss.Spans().RemoveIf(func(ptrace.Span) bool { return dropped() })
			if ss.Spans().Len() == 0 {
				return true
			}
			holdsSpans = true
			return false
		})
		return heldSpans && !holdsSpans
	})
}
