package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadata"
	"github.com/spancost/spancost/collector/internal/wirepb"
)

// startSinks configures every sink in the sidecar (a wrong plugin or config
// stops the collector, naming the sink) and starts reading their counters.
func (e *pythonExtension) startSinks(ctx context.Context) error {
	if len(e.cfg.Sinks) == 0 {
		return nil
	}
	for _, name := range e.cfg.sinkNames() {
		sink := e.cfg.Sinks[name]
		configJSON, err := sink.configJSON()
		if err != nil {
			return fmt.Errorf("sinks::%s::config: %w", name, err)
		}
		key := regKey{kind: wirepb.Kind_KIND_SINK, instance: name}
		if _, err := e.register(ctx, key, registration{plugin: sink.Plugin, configJSON: configJSON}); err != nil {
			return fmt.Errorf("sinks::%s: %w", name, err)
		}
	}
	s, err := newSinkStats(e.telemetry, e.set.ID, e.set.Logger, e.cfg.sinkNames(), e.configureSinks)
	if err != nil {
		return err
	}
	e.sinks = s
	go s.poll(e.cfg.StatsInterval, e.client)
	return nil
}

// configureSinks configures the named sinks again: a sidecar that restarted
// behind the collector's back (a sidecar container) has lost them, and
// exporters get UNAVAILABLE for them until then.
func (e *pythonExtension) configureSinks(ctx context.Context, names []string) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.StartupTimeout)
	defer cancel()
	for _, name := range names {
		key := regKey{kind: wirepb.Kind_KIND_SINK, instance: name}
		e.mu.Lock()
		r, ok := e.registrations[key]
		e.mu.Unlock()
		if !ok {
			continue
		}
		if _, err := e.configure(ctx, key, r.registration); err != nil {
			e.set.Logger.Warn("configuring a sink the sidecar lost failed; trying again at the next reading", zap.String("sink", name), zap.Error(err))
			continue
		}
		e.set.Logger.Info("configured a sink the sidecar had lost (it restarted)", zap.String("sink", name))
	}
}

// sinkStats turns the sidecar's running totals into collector metrics.
//
// The sidecar reports totals since it started; counters here get the
// difference from the last reading, and a total lower than the last one
// means the sidecar restarted, so all of it is new.
type sinkStats struct {
	telemetry *metadata.TelemetryBuilder
	component attribute.KeyValue
	logger    *zap.Logger
	names     []string
	restore   func(ctx context.Context, missing []string)

	mu          sync.Mutex
	spans       map[[3]string]int64
	unavailable map[string]int64
	gauges      map[[2]string]float64

	cancel context.CancelFunc
	done   chan struct{}
	ctx    context.Context
}

func newSinkStats(tb *metadata.TelemetryBuilder, id component.ID, logger *zap.Logger, names []string, restore func(context.Context, []string)) (*sinkStats, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sinkStats{
		telemetry:   tb,
		component:   attribute.String("extension", id.String()),
		logger:      logger,
		names:       names,
		restore:     restore,
		spans:       map[[3]string]int64{},
		unavailable: map[string]int64{},
		gauges:      map[[2]string]float64{},
		cancel:      cancel,
		done:        make(chan struct{}),
		ctx:         ctx,
	}
	if err := tb.RegisterExtensionPythonSinkGaugeCallback(s.observe); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

func (s *sinkStats) observe(_ context.Context, o metric.Float64Observer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, value := range s.gauges {
		o.Observe(value, metric.WithAttributes(s.component, attribute.String("sink", key[0]), attribute.String("name", key[1])))
	}
	return nil
}

func (s *sinkStats) poll(interval time.Duration, client wirepb.SidecarClient) {
	defer close(s.done)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-s.ctx.Done():
			// One last reading, so that what happened since the last tick is counted.
			s.read(client, time.Second)
			return
		case <-ticker.C:
			s.read(client, interval)
		}
	}
}

func (s *sinkStats) read(client wirepb.SidecarClient, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := client.Stats(ctx, &wirepb.StatsRequest{})
	if err != nil {
		s.logger.Debug("reading the sinks' statistics from the sidecar failed", zap.Error(err))
		return
	}
	s.record(resp)
	if missing := s.missing(resp); len(missing) > 0 {
		// Not ctx: that is the reading's deadline, too short for a sink that
		// connects to its database while it is configured.
		s.restore(context.Background(), missing)
	}
}

// missing are the configured sinks the sidecar does not report.
func (s *sinkStats) missing(resp *wirepb.StatsResponse) []string {
	present := map[string]bool{}
	for _, sink := range resp.GetSinks() {
		present[sink.GetSink()] = true
	}
	var missing []string
	for _, name := range s.names {
		if !present[name] {
			missing = append(missing, name)
		}
	}
	return missing
}

// record adds what changed since the last reading to the counters and
// replaces the gauges.
func (s *sinkStats) record(resp *wirepb.StatsResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx := context.Background()
	gauges := map[[2]string]float64{}
	for _, sink := range resp.GetSinks() {
		name := sink.GetSink()
		for _, c := range sink.GetCounts() {
			key := [3]string{name, c.GetEvent(), c.GetReason()}
			if delta := since(s.spans[key], c.GetSpans()); delta > 0 {
				s.telemetry.ExtensionPythonSinkSpans.Add(ctx, delta, metric.WithAttributes(s.component,
					attribute.String("sink", name), attribute.String("event", c.GetEvent()), attribute.String("reason", c.GetReason())))
			}
			s.spans[key] = c.GetSpans()
		}
		if delta := since(s.unavailable[name], sink.GetUnavailable()); delta > 0 {
			s.telemetry.ExtensionPythonSinkBatchesUnavailable.Add(ctx, delta, metric.WithAttributes(s.component, attribute.String("sink", name)))
		}
		s.unavailable[name] = sink.GetUnavailable()
		for _, g := range sink.GetGauges() {
			gauges[[2]string{name, g.GetName()}] = g.GetValue()
		}
	}
	s.gauges = gauges
}

// since is what a running total gained from last to now; a total that went
// down was reset (the sidecar restarted), so all of now is new.
func since(last, now int64) int64 {
	if now < last {
		return now
	}
	return now - last
}

func (s *sinkStats) stop() {
	s.cancel()
	<-s.done
}
