package pythonprocessor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

func TestApplyChangesSharedVectors(t *testing.T) {
	v := loadChangeVectors(t)
	for _, c := range v.Cases {
		t.Run(c.Name, func(t *testing.T) {
			td, ch := decodeVector(t, c.Input, c.Changes)
			want, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(c.Output)
			require.NoError(t, err)
			require.NoError(t, applyChanges(td, ch))
			require.NoError(t, ptracetest.CompareTraces(want, td))
		})
	}
}

func TestApplyChangesRejectsBadAnswersWithoutTouchingTheBatch(t *testing.T) {
	v := loadChangeVectors(t)
	for _, c := range v.Invalid {
		t.Run(c.Name, func(t *testing.T) {
			td, ch := decodeVector(t, c.Input, c.Changes)
			before := ptrace.NewTraces()
			td.CopyTo(before)
			err := applyChanges(td, ch)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.Error)
			require.NoError(t, ptracetest.CompareTraces(before, td))
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
