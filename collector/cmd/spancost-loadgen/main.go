// Command spancost-loadgen sends OTLP/gRPC trace batches at a fixed rate and
// reports exactly how many spans the receiver acknowledged, so `make bench`
// can tell a collector that keeps up from one that drops. (telemetrygen drops
// spans in its own SDK queue when the receiver is slow, and its --rate does
// not hold above a few thousand spans a second, so neither can say that.)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
)

type result struct {
	SentSpans   int64   `json:"sent_spans"`
	AckedSpans  int64   `json:"acked_spans"`
	FailedCalls int64   `json:"failed_calls"`
	Elapsed     float64 `json:"elapsed_s"`
	Requests    int     `json:"requests"`
	P50Millis   float64 `json:"p50_ms"`
	P99Millis   float64 `json:"p99_ms"`
}

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:4317", "OTLP/gRPC endpoint")
	rate := flag.Float64("rate", 10000, "spans per second over all workers (0: as fast as acknowledged)")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	batchSize := flag.Int("batch", 512, "spans per request")
	workers := flag.Int("workers", 4, "concurrent senders")
	env := flag.String("environment", "prod", "deployment.environment.name of the resource")
	traceSize := flag.Int("trace-size", 1, "spans per trace: a SERVER root, then INTERNAL children of it (1: every span a root)")
	preEncoded := flag.Int("pre-encoded", 0, "encode this many requests before sending, then send their bytes with fresh IDs patched in (0: build and encode each request while sending)")
	flag.Parse()
	if *traceSize < 1 {
		fmt.Fprintln(os.Stderr, "-trace-size: must be at least 1")
		os.Exit(2)
	}

	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "endpoint:", err)
		os.Exit(2)
	}
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)
	var pool *requestPool
	if *preEncoded > 0 {
		pool = newRequestPool(*preEncoded, *batchSize, *traceSize, *env)
	}

	var res result
	var mu sync.Mutex
	var latencies []float64
	var idSeq atomic.Uint64
	interval := time.Duration(0)
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(*batchSize) * float64(*workers) / *rate)
	}
	began := time.Now()
	deadline := began.Add(*duration)
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now()
			for time.Now().Before(deadline) {
				var err error
				var start time.Time
				if pool != nil {
					payload := pool.next()
					start = time.Now()
					err = conn.Invoke(context.Background(), exportMethod, payload, new(rawMessage), grpc.ForceCodecV2(rawCodec{}))
				} else {
					req := ptraceotlp.NewExportRequestFromTraces(makeBatch(*batchSize, *traceSize, *env, &idSeq))
					start = time.Now()
					_, err = client.Export(context.Background(), req)
				}
				took := time.Since(start)
				atomic.AddInt64(&res.SentSpans, int64(*batchSize))
				mu.Lock()
				latencies = append(latencies, float64(took)/float64(time.Millisecond))
				mu.Unlock()
				if err != nil {
					atomic.AddInt64(&res.FailedCalls, 1)
				} else {
					atomic.AddInt64(&res.AckedSpans, int64(*batchSize))
				}
				if interval > 0 {
					next = next.Add(interval)
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(began).Seconds()
	slices.Sort(latencies)
	res.Requests = len(latencies)
	res.P50Millis = quantile(latencies, 0.50)
	res.P99Millis = quantile(latencies, 0.99)
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

// makeBatch builds one request: a resource (an EKS node, so spancost.cost can
// price it) with n spans, a few attributes each, unique IDs, in traces of
// traceSize spans: a SERVER root (charged for compute by spancost.cost) and
// INTERNAL children of it (not charged). traceSize 1 makes every span a local
// root: the most pricing work per span.
func makeBatch(n, traceSize int, env string, seq *atomic.Uint64) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "checkout")
	rs.Resource().Attributes().PutStr("deployment.environment.name", env)
	rs.Resource().Attributes().PutStr("cloud.provider", "aws")
	rs.Resource().Attributes().PutStr("cloud.platform", "aws_eks")
	rs.Resource().Attributes().PutStr("cloud.region", "us-east-1")
	rs.Resource().Attributes().PutStr("host.type", "m5.large")
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("spancost-loadgen")
	now := time.Now()
	spans := ss.Spans()
	spans.EnsureCapacity(n)
	var tid [16]byte
	var root [8]byte
	for i := 0; i < n; i++ {
		id := seq.Add(1)
		s := spans.AppendEmpty()
		var sid [8]byte
		putUint64(sid[:], id)
		if i%traceSize == 0 {
			putUint64(tid[8:], id)
			root = sid
			s.SetName("GET /checkout")
			s.SetKind(ptrace.SpanKindServer)
		} else {
			s.SetParentSpanID(pcommon.SpanID(root))
			s.SetName("reserve stock")
			s.SetKind(ptrace.SpanKindInternal)
		}
		s.SetTraceID(pcommon.TraceID(tid))
		s.SetSpanID(pcommon.SpanID(sid))
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-5 * time.Millisecond)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
		s.Attributes().PutStr("http.route", "/checkout")
		s.Attributes().PutInt("http.response.status_code", 200)
	}
	return td
}

func putUint64(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// exportMethod is OTLP/gRPC's Export, called with pre-encoded bytes.
const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// rawMessage is a request or answer as bytes on the wire.
type rawMessage []byte

// rawCodec sends a rawMessage as it is and keeps the answer's bytes, so a
// pre-encoded request costs the generator no encoding at all.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(rawMessage)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot encode %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return fmt.Errorf("rawCodec: cannot decode into %T", v)
	}
	*m = data.Materialize()
	return nil
}

// idMark is in the top byte of every ID a pooled request carries, so that
// their places in the encoded bytes can be found by value and no other field
// (timestamps, the status code) is mistaken for one.
const idMark = uint64(0x5c) << 56

// requestPool holds requests encoded once. Each time one is sent again, every
// ID in it (trace IDs' low halves, span and parent IDs) is moved on by the
// pool's span count, so no two requests sent carry the same trace or span:
// the totals sink sees new traces, as it would from a real service.
type requestPool struct {
	mu       sync.Mutex
	payloads [][]byte
	offsets  [][]int // where each payload's 8-byte IDs are
	cursor   int
	round    uint64
	spans    uint64
}

func newRequestPool(n, batchSize, traceSize int, env string) *requestPool {
	var seq atomic.Uint64
	seq.Store(idMark)
	p := &requestPool{spans: uint64(n * batchSize)}
	var m ptrace.ProtoMarshaler
	for i := 0; i < n; i++ {
		first := seq.Load() + 1
		payload, err := m.MarshalTraces(makeBatch(batchSize, traceSize, env, &seq))
		if err != nil {
			fmt.Fprintln(os.Stderr, "encoding a pooled request:", err)
			os.Exit(2)
		}
		var offsets []int
		for at := 0; at+8 <= len(payload); at++ {
			if v := getUint64(payload[at:]); v >= first && v <= seq.Load() {
				offsets = append(offsets, at)
				at += 7
			}
		}
		p.payloads = append(p.payloads, payload)
		p.offsets = append(p.offsets, offsets)
	}
	return p
}

// next returns a copy of the next pooled request with its IDs moved on.
func (p *requestPool) next() rawMessage {
	p.mu.Lock()
	i, round := p.cursor, p.round
	p.cursor++
	if p.cursor == len(p.payloads) {
		p.cursor, p.round = 0, p.round+1
	}
	p.mu.Unlock()
	out := slices.Clone(p.payloads[i])
	delta := round * p.spans
	for _, at := range p.offsets[i] {
		putUint64(out[at:], getUint64(out[at:])+delta)
	}
	return out
}

func getUint64(b []byte) uint64 {
	var v uint64
	for i := 0; i < 8; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v
}
