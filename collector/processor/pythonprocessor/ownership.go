package pythonprocessor // import "github.com/spancost/spancost/collector/processor/pythonprocessor"

import (
	"math"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/spancost/spancost/collector/internal/wirepb"
)

// owned is what the processor's plugin owns (wirepb.Ownership): attributes
// no sender may set. The plugin removes a sender's copies itself; when the
// sidecar does not answer for a batch and on_error is pass, markUnprocessed
// does it here, so a sender's value never leaves the processor.
type owned struct {
	keys        map[string]struct{}
	unprocessed []*wirepb.Attribute
	event       *wirepb.PluginEvent
	trustedKey  string
}

// newOwned returns nil when the plugin owns nothing.
func newOwned(o *wirepb.Ownership) *owned {
	if len(o.GetKeys()) == 0 && len(o.GetUnprocessed()) == 0 {
		return nil
	}
	keys := make(map[string]struct{}, len(o.GetKeys()))
	for _, k := range o.GetKeys() {
		keys[k] = struct{}{}
	}
	return &owned{keys: keys, unprocessed: o.GetUnprocessed(), event: o.GetUnprocessedEvent(), trustedKey: o.GetTrustedKey()}
}

// markUnprocessed removes every copy of every owned attribute from each span
// of td and puts the plugin's unprocessed marker on it, except on spans that
// carry a price a trusted upstream collector wrote. It returns how many spans
// it marked.
func (o *owned) markUnprocessed(td ptrace.Traces) int64 {
	var marked int64
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		sss := rss.At(i).ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				attrs := spans.At(k).Attributes()
				if o.trustedKey != "" && isUpstreamPrice(attrs, o.trustedKey) {
					continue
				}
				attrs.RemoveIf(func(key string, _ pcommon.Value) bool {
					_, ok := o.keys[key]
					return ok
				})
				for _, a := range o.unprocessed {
					setAttribute(attrs, a)
				}
				marked++
			}
		}
	}
	return marked
}

// isUpstreamPrice mirrors spancost.cost's test for a price an upstream
// collector wrote: the first attribute of key is a finite double >= 0.
func isUpstreamPrice(attrs pcommon.Map, key string) bool {
	v, ok := attrs.Get(key)
	if !ok || v.Type() != pcommon.ValueTypeDouble {
		return false
	}
	d := v.Double()
	return !math.IsNaN(d) && !math.IsInf(d, 0) && d >= 0
}
