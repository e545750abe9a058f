package pythonextension

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/spancost/spancost/collector/internal/wirepb"
)

func TestRequestCodecEncodesLikeProto(t *testing.T) {
	codec := newRequestCodec()
	for _, req := range []*wirepb.ProcessTracesRequest{
		{},
		{Instance: "python/cost"},
		{Traces: []byte{1, 2, 3}},
		{Instance: "python/env", Traces: bytes.Repeat([]byte{0xab}, 70_000)},
	} {
		want, err := proto.Marshal(req)
		require.NoError(t, err)
		got, err := codec.Marshal(req)
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got.Materialize()), "bytes differ for %v", req)

		var back wirepb.ProcessTracesRequest
		require.NoError(t, codec.Unmarshal(got, &back))
		require.True(t, proto.Equal(req, &back))
	}
	// Other messages go through the stock codec.
	other := &wirepb.ConfigureRequest{Instance: "python/env", Plugin: "spancost.environment", ConfigJson: "{}"}
	got, err := codec.Marshal(other)
	require.NoError(t, err)
	want, err := proto.Marshal(other)
	require.NoError(t, err)
	require.Equal(t, want, got.Materialize())
}

func BenchmarkRequestMarshal(b *testing.B) {
	req := &wirepb.ProcessTracesRequest{Instance: "python/env", Traces: bytes.Repeat([]byte{0xab}, 64<<10)}
	b.Run("stock", func(b *testing.B) {
		codec := newRequestCodec().CodecV2
		b.ReportAllocs()
		for b.Loop() {
			out, _ := codec.Marshal(req)
			out.Free()
		}
	})
	b.Run("request", func(b *testing.B) {
		codec := newRequestCodec()
		b.ReportAllocs()
		for b.Loop() {
			out, _ := codec.Marshal(req)
			out.Free()
		}
	})
}
