package pythonprocessor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/spancost/spancost/collector/internal/wirepb"
)

// The vectors are shared with python_processor/tests/test_changes.py, which
// runs them through spancost.changes.apply, the reference implementation.
type changeVectors struct {
	Cases []struct {
		Name    string          `json:"name"`
		Input   json.RawMessage `json:"input"`
		Changes json.RawMessage `json:"changes"`
		Output  json.RawMessage `json:"output"`
	} `json:"cases"`
	Invalid []struct {
		Name    string          `json:"name"`
		Input   json.RawMessage `json:"input"`
		Changes json.RawMessage `json:"changes"`
		Error   string          `json:"error"`
	} `json:"invalid"`
}

func loadChangeVectors(t *testing.T) changeVectors {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "proto", "testdata", "changes.json"))
	require.NoError(t, err)
	var v changeVectors
	require.NoError(t, json.Unmarshal(raw, &v))
	require.NotEmpty(t, v.Cases)
	require.NotEmpty(t, v.Invalid)
	return v
}

func decodeVector(t *testing.T, traces, changes json.RawMessage) (ptrace.Traces, *wirepb.BatchChanges) {
	td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(traces)
	require.NoError(t, err)
	ch := &wirepb.BatchChanges{}
	require.NoError(t, protojson.Unmarshal(changes, ch))
	return td, ch
}

// encodings gives td's JSON, for a readable difference, and its protobuf
// encoding, which also tells -0.0 from 0.0. Neither merges repeated keys or
// ignores attribute order, as ptracetest's comparison (pcommon.Map's) does.
func encodings(t *testing.T, td ptrace.Traces) (string, []byte) {
	j, err := (&ptrace.JSONMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	p, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	return string(j), p
}

func TestApplyChangesSharedVectors(t *testing.T) {
	v := loadChangeVectors(t)
	for _, c := range v.Cases {
		t.Run(c.Name, func(t *testing.T) {
			td, ch := decodeVector(t, c.Input, c.Changes)
			want, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(c.Output)
			require.NoError(t, err)
			require.NoError(t, applyChanges(td, ch))
			wantJSON, wantProto := encodings(t, want)
			gotJSON, gotProto := encodings(t, td)
			require.Equal(t, wantJSON, gotJSON)
			require.Equal(t, wantProto, gotProto)
		})
	}
}

func TestApplyChangesRejectsBadAnswersWithoutTouchingTheBatch(t *testing.T) {
	v := loadChangeVectors(t)
	for _, c := range v.Invalid {
		t.Run(c.Name, func(t *testing.T) {
			td, ch := decodeVector(t, c.Input, c.Changes)
			_, before := encodings(t, td)
			err := applyChanges(td, ch)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.Error)
			_, after := encodings(t, td)
			require.Equal(t, before, after)
		})
	}
	require.EqualError(t, applyChanges(ptrace.NewTraces(), nil), "empty answer")
}

func TestApplyChangesDropsEverySpanOfABigBatch(t *testing.T) {
	td := ptrace.NewTraces()
	for r := 0; r < 3; r++ {
		ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
		for i := 0; i < 1000; i++ {
			ss.Spans().AppendEmpty().SetName("s")
		}
	}
	ch := &wirepb.BatchChanges{
		Attributes: []*wirepb.AttributeChange{{Start: 0, End: 3000, Set: []*wirepb.Attribute{{Key: "k", Value: &wirepb.Attribute_IntValue{IntValue: 1}}}}},
		Drop:       []*wirepb.SpanRange{{Start: 0, End: 1000}, {Start: 2000, End: 3000}},
	}
	require.NoError(t, applyChanges(td, ch))
	require.Equal(t, 1, td.ResourceSpans().Len())
	require.Equal(t, 1000, td.SpanCount())
	v, ok := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(999).Attributes().Get("k")
	require.True(t, ok)
	assert.Equal(t, int64(1), v.Int())
}

// The hot path's scans for repeated keys: nothing allocated when there is
// no copy to remove (the common case).
func TestRepeatedKeyScansAllocateNothing(t *testing.T) {
	attrs := pcommon.NewMap()
	attrs.PutStr("http.route", "/items")
	attrs.PutDouble("cost.usd", 1)
	attrs.PutInt("http.response.status_code", 200)
	change := &wirepb.AttributeChange{Remove: []string{"cost.model", "cost.source"}}
	allocs := testing.AllocsPerRun(100, func() {
		removeLaterCopies(attrs, "cost.usd")
		applyAttributeChange(attrs, change, 0)
	})
	assert.Zero(t, allocs)
	assert.Equal(t, map[string]any{"http.route": "/items", "cost.usd": 1.0, "http.response.status_code": int64(200)}, attrs.AsRaw())
}
