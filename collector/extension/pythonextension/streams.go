package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spancost/spancost/collector/internal/wirepb"
)

// maxStreams bounds the ProcessTracesStream calls open at once. The sidecar
// serves each open stream on a thread of its own (STREAM_THREADS in
// python_processor/src/spancost/sidecar/server.py is larger) and processes at
// most --workers batches at once whatever the number of streams.
const maxStreams = 4

type traceStream = grpc.BidiStreamingClient[wirepb.ProcessTracesRequest, wirepb.ProcessTracesResponse]

// streamPool sends batches over a few long-lived ProcessTracesStream calls,
// one batch in flight per stream: grpcio in the sidecar then pays the set-up of
// a call per stream, not per batch (BENCHMARKS.md, "The Python hop with the
// shipped chain"). A stream that fails, or whose batch runs out of time, is
// closed and a new one opened for a later batch, so an answer never arrives
// for the wrong batch.
type streamPool struct {
	open  func(ctx context.Context) (traceStream, error)
	slots chan struct{}      // a token per stream open
	idle  chan *pooledStream // open streams with no batch in flight
	// unimplemented: the sidecar answered UNIMPLEMENTED (one older than the
	// stream); batches then go as unary calls.
	unimplemented atomic.Bool
}

type pooledStream struct {
	stream traceStream
	cancel context.CancelFunc
	used   bool // it answered a batch before
	// cancelled: a batch's deadline cancelled the stream (even if its answer
	// arrived first); it must not be pooled again.
	cancelled bool
}

func newStreamPool(open func(ctx context.Context) (traceStream, error)) *streamPool {
	return &streamPool{
		open:  open,
		slots: make(chan struct{}, maxStreams),
		idle:  make(chan *pooledStream, maxStreams),
	}
}

// roundTrip sends req on an idle stream (opening one while fewer than
// maxStreams are open, else waiting for one until ctx ends) and returns the
// answer. A stream that had answered before and fails without an answer from
// the sidecar (it restarted under the stream) is retried once on a new stream.
func (p *streamPool) roundTrip(ctx context.Context, req *wirepb.ProcessTracesRequest) (*wirepb.ProcessTracesResponse, error) {
	for attempt := 0; ; attempt++ {
		s, err := p.take(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := s.exchange(ctx, req)
		if err == nil {
			if s.cancelled {
				p.discard(s)
			} else {
				s.used = true
				p.idle <- s
			}
			return resp, nil
		}
		p.discard(s)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr // the batch's deadline: the stream was cancelled for it
		}
		if attempt == 0 && s.used && staleStream(err) {
			continue
		}
		return nil, err
	}
}

// staleStream tells an error of a stream the sidecar behind it no longer
// serves (the connection broke, the sidecar restarted) from its answer.
func staleStream(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled:
		return true
	}
	return errors.Is(err, io.EOF)
}

func (p *streamPool) take(ctx context.Context) (*pooledStream, error) {
	select {
	case s := <-p.idle:
		return s, nil
	default:
	}
	select {
	case s := <-p.idle:
		return s, nil
	case p.slots <- struct{}{}:
		sctx, cancel := context.WithCancel(context.Background())
		stream, err := p.open(sctx)
		if err != nil {
			cancel()
			<-p.slots
			return nil, err
		}
		return &pooledStream{stream: stream, cancel: cancel}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *streamPool) discard(s *pooledStream) {
	s.cancel()
	<-p.slots
}

// reset closes every idle stream: after the sidecar restarted, and at shutdown.
func (p *streamPool) reset() {
	for {
		select {
		case s := <-p.idle:
			p.discard(s)
		default:
			return
		}
	}
}

// exchange sends req and waits for its answer; ctx's end cancels the stream
// (and marks it cancelled, should that happen as the answer arrives).
func (s *pooledStream) exchange(ctx context.Context, req *wirepb.ProcessTracesRequest) (*wirepb.ProcessTracesResponse, error) {
	stop := context.AfterFunc(ctx, s.cancel)
	defer func() {
		if !stop() {
			s.cancelled = true
		}
	}()
	if err := s.stream.Send(req); err != nil {
		if !errors.Is(err, io.EOF) {
			return nil, err
		}
		// The stream ended: its status comes with Recv.
	}
	resp, err := s.stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil, status.Error(codes.Unavailable, "the sidecar ended the stream without an answer")
	}
	return resp, err
}
