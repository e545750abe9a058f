package pythonextension

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/spancost/spancost/collector/internal/wirepb"
)

// streamSidecar answers each batch with an event naming its instance;
// instance "slow" takes 300 ms, "lost" ends the stream with FAILED_PRECONDITION.
type streamSidecar struct {
	wirepb.UnimplementedSidecarServer
	opened atomic.Int32
}

func (f *streamSidecar) ProcessTracesStream(stream grpc.BidiStreamingServer[wirepb.ProcessTracesRequest, wirepb.ProcessTracesResponse]) error {
	f.opened.Add(1)
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		switch req.GetInstance() {
		case "slow":
			time.Sleep(300 * time.Millisecond)
		case "lost":
			return status.Error(codes.FailedPrecondition, "unknown plugin instance")
		}
		answer := &wirepb.ProcessTracesResponse{Events: []*wirepb.PluginEvent{{Event: req.GetInstance(), Spans: int64(len(req.GetTraces()))}}}
		if err := stream.Send(answer); err != nil {
			return err
		}
	}
}

func startStreamSidecar(t *testing.T) (*streamSidecar, *streamPool) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fake := &streamSidecar{}
	srv := grpc.NewServer()
	wirepb.RegisterSidecarServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client := wirepb.NewSidecarClient(conn)
	pool := newStreamPool(func(ctx context.Context) (traceStream, error) { return client.ProcessTracesStream(ctx) })
	t.Cleanup(func() {
		pool.reset()
		_ = conn.Close()
		srv.Stop()
	})
	return fake, pool
}

func ask(ctx context.Context, pool *streamPool, instance string, size int) error {
	resp, err := pool.roundTrip(ctx, &wirepb.ProcessTracesRequest{Instance: instance, Traces: make([]byte, size)})
	if err != nil {
		return err
	}
	ev := resp.GetEvents()
	if len(ev) != 1 || ev[0].GetEvent() != instance || ev[0].GetSpans() != int64(size) {
		return fmt.Errorf("batch %s/%d got the answer %v", instance, size, ev)
	}
	return nil
}

// Every batch gets its own answer, from many goroutines at once, over at most
// maxStreams streams.
func TestStreamPoolAnswersEachBatchOnFewStreams(t *testing.T) {
	fake, pool := startStreamSidecar(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16*25)
	for g := range 16 {
		wg.Go(func() {
			for i := range 25 {
				errs <- ask(context.Background(), pool, fmt.Sprintf("p%d", g), i)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := fake.opened.Load(); n < 1 || n > maxStreams {
		t.Fatalf("%d streams opened, want 1..%d", n, maxStreams)
	}
}

// A batch out of time returns its context's error and closes its stream: the
// next batch gets its own answer, not the late one.
func TestStreamPoolTimedOutBatchClosesItsStream(t *testing.T) {
	fake, pool := startStreamSidecar(t)
	if err := ask(context.Background(), pool, "warm", 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ask(ctx, pool, "slow", 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow batch: %v, want DeadlineExceeded", err)
	}
	for i := range 5 {
		if err := ask(context.Background(), pool, "fast", i); err != nil {
			t.Fatal(err)
		}
	}
	if n := fake.opened.Load(); n != 2 {
		t.Fatalf("%d streams opened, want 2 (the first closed by the timeout)", n)
	}
}

// The sidecar's error for a batch reaches the caller with its code; the next
// batch goes on a new stream.
func TestStreamPoolReturnsTheSidecarsStatus(t *testing.T) {
	fake, pool := startStreamSidecar(t)
	err := ask(context.Background(), pool, "lost", 1)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("got %v, want FAILED_PRECONDITION", err)
	}
	if err := ask(context.Background(), pool, "found", 3); err != nil {
		t.Fatal(err)
	}
	if n := fake.opened.Load(); n != 2 {
		t.Fatalf("%d streams opened, want 2", n)
	}
}

// hookStream is a stream whose Send and Recv a test decides.
type hookStream struct {
	traceStream
	recv func() (*wirepb.ProcessTracesResponse, error)
}

func (h *hookStream) Send(*wirepb.ProcessTracesRequest) error { return nil }

func (h *hookStream) Recv() (*wirepb.ProcessTracesResponse, error) { return h.recv() }

// A batch whose deadline passes just as its answer arrives: the answer is
// used, but the stream its deadline cancelled is closed, not pooled for the
// next batch (which would fail on it, or be retried).
func TestAStreamCancelledAsItAnsweredIsNotPooled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := newStreamPool(func(sctx context.Context) (traceStream, error) {
		return &hookStream{recv: func() (*wirepb.ProcessTracesResponse, error) {
			cancel()
			<-sctx.Done() // the deadline has cancelled the stream
			return &wirepb.ProcessTracesResponse{}, nil
		}}, nil
	})
	if _, err := pool.roundTrip(ctx, &wirepb.ProcessTracesRequest{Instance: "p"}); err != nil {
		t.Fatalf("the answer that arrived was lost: %v", err)
	}
	if n := len(pool.idle); n != 0 {
		t.Fatalf("%d cancelled stream(s) pooled for the next batch", n)
	}
	if n := len(pool.slots); n != 0 {
		t.Fatalf("%d stream slot(s) still taken", n)
	}
}
