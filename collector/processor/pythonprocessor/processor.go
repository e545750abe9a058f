package pythonprocessor // import "github.com/spancost/spancost/collector/processor/pythonprocessor"

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spancost/spancost/collector/internal/wirepb"
	"github.com/spancost/spancost/collector/processor/pythonprocessor/internal/metadata"
	"github.com/spancost/spancost/collector/sidecarapi"
)

// errSidecar wraps every failure of a round trip to the sidecar.
var errSidecar = errors.New("python sidecar failed")

type pythonProcessor struct {
	cfg        *Config
	logger     *zap.Logger
	telemetry  *metadata.TelemetryBuilder
	id         component.ID
	instance   string
	configJSON string
	// attrs identifies this processor on every metric it records, as
	// processorhelper does for its own metrics.
	attrs   metric.MeasurementOption
	sidecar sidecarapi.Sidecar
	// owned is what the plugin owns (nil: nothing), applied when the sidecar
	// does not answer for a batch and on_error is pass.
	owned *owned

	marshaler   ptrace.ProtoMarshaler
	unmarshaler ptrace.ProtoUnmarshaler
}

func newProcessor(cfg *Config, set processor.Settings) (*pythonProcessor, error) {
	configJSON, err := cfg.pluginConfigJSON()
	if err != nil {
		return nil, err
	}
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return &pythonProcessor{
		cfg:        cfg,
		logger:     set.Logger,
		telemetry:  tb,
		id:         set.ID,
		instance:   set.ID.String(),
		configJSON: configJSON,
		attrs:      metric.WithAttributeSet(attribute.NewSet(processorAttr(set.ID))),
	}, nil
}

// start finds the extension and has the sidecar validate the plugin's
// configuration; a wrong plugin or configuration stops the collector here.
func (p *pythonProcessor) start(ctx context.Context, host component.Host) error {
	ext, ok := host.GetExtensions()[p.cfg.Extension]
	if !ok {
		return fmt.Errorf("extension: %q is not running; configure it under extensions and list it in service::extensions", p.cfg.Extension)
	}
	sidecar, ok := ext.(sidecarapi.Sidecar)
	if !ok {
		return fmt.Errorf("extension: %q is not a python extension", p.cfg.Extension)
	}
	ownership, err := sidecar.Register(ctx, p.instance, p.cfg.Plugin, p.configJSON)
	if err != nil {
		switch {
		case errors.Is(err, sidecarapi.ErrPluginNotFound):
			return fmt.Errorf("plugin: %q: %w", p.cfg.Plugin, err)
		case errors.Is(err, sidecarapi.ErrPluginConfig):
			return fmt.Errorf("config: plugin %q rejected its configuration: %w", p.cfg.Plugin, err)
		default:
			return fmt.Errorf("plugin %q: %w", p.cfg.Plugin, err)
		}
	}
	p.sidecar = sidecar
	p.owned = newOwned(ownership)
	return nil
}

func (p *pythonProcessor) shutdown(context.Context) error {
	if p.sidecar != nil {
		p.sidecar.Unregister(p.instance)
	}
	p.telemetry.Shutdown()
	return nil
}

// processTraces sends td to the plugin, in parts when it is larger than
// max_request_bytes, and returns what the plugin made of it. td is not
// modified unless the plugin answered for all of it, so on failure it can be
// forwarded as it came (bar the attributes the plugin owns; see fail).
func (p *pythonProcessor) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	// Encode first and split only what turns out too large: sizing every
	// batch before encoding it would walk it once more.
	payload, err := p.marshaler.MarshalTraces(td)
	if err != nil {
		return p.fail(ctx, td, "other", fmt.Errorf("encoding the batch: %w", err))
	}
	if len(payload) <= p.cfg.MaxRequestBytes {
		result, reason, err := p.roundTrip(ctx, td, payload)
		if err != nil {
			return p.fail(ctx, td, reason, err)
		}
		return result, nil
	}
	var out ptrace.Traces
	for i, part := range splitTraces(td, p.cfg.MaxRequestBytes, &p.marshaler) {
		payload, err := p.marshaler.MarshalTraces(part)
		if err != nil {
			return p.fail(ctx, td, "other", fmt.Errorf("encoding the batch: %w", err))
		}
		result, reason, err := p.roundTrip(ctx, part, payload)
		if err != nil {
			return p.fail(ctx, td, reason, err)
		}
		if i == 0 {
			out = result
		} else {
			result.ResourceSpans().MoveAndAppendTo(out.ResourceSpans())
		}
	}
	return out, nil
}

// roundTrip sends one request, part encoded as payload; on failure it says
// why, in the words of the reason attribute.
func (p *pythonProcessor) roundTrip(ctx context.Context, part ptrace.Traces, payload []byte) (ptrace.Traces, string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	p.telemetry.ProcessorPythonRequestsSent.Add(ctx, 1, p.attrs)
	p.telemetry.ProcessorPythonSpansSent.Add(ctx, int64(part.SpanCount()), p.attrs)
	began := time.Now()
	resp, err := p.sidecar.ProcessTraces(ctx, p.instance, payload)
	p.telemetry.ProcessorPythonRoundTripDuration.Record(context.WithoutCancel(ctx), float64(time.Since(began))/float64(time.Millisecond), p.attrs)
	if err != nil {
		return ptrace.Traces{}, failureReason(err), err
	}
	var result ptrace.Traces
	switch answer := resp.GetResult().(type) {
	case *wirepb.ProcessTracesResponse_Traces:
		result, err = p.unmarshaler.UnmarshalTraces(answer.Traces)
		if err != nil {
			return ptrace.Traces{}, "bad_response", fmt.Errorf("decoding the sidecar's answer: %w", err)
		}
	case *wirepb.ProcessTracesResponse_Changes:
		// part is td itself or a copy of part of it; applyChanges checks
		// the whole answer before it changes anything.
		if err := applyChanges(part, answer.Changes); err != nil {
			return ptrace.Traces{}, "bad_response", fmt.Errorf("the sidecar's changes: %w", err)
		}
		result = part
	default:
		return ptrace.Traces{}, "bad_response", errors.New("the sidecar answered neither traces nor changes")
	}
	for _, ev := range resp.GetEvents() {
		p.telemetry.ProcessorPythonPluginEvents.Add(ctx, ev.GetSpans(), metric.WithAttributes(
			processorAttr(p.id), attribute.String("event", ev.GetEvent()), attribute.String("reason", ev.GetReason())))
	}
	return result, "", nil
}

// rejectError is what on_error: reject returns: not permanent, and UNAVAILABLE to
// the sender whatever the sidecar's own status was. Receivers answer with a gRPC
// status found in the error's chain, so the cause must not be wrapped: a plugin's
// INTERNAL would tell the sender not to retry, and its spans would be lost.
type rejectError struct {
	reason string
	cause  error
}

func (e *rejectError) Error() string {
	return fmt.Sprintf("%v (%s), on_error is reject: %v", errSidecar, e.reason, e.cause)
}

func (e *rejectError) Unwrap() error { return errSidecar }

// GRPCStatus is what receivers answer the sender.
func (e *rejectError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}

// processorAttr is the attribute processorhelper puts on its own metrics.
func processorAttr(id component.ID) attribute.KeyValue {
	return attribute.String("processor", id.String())
}

func failureReason(err error) string {
	// The extension's own errors carry no gRPC status: without these checks
	// they would all count as plugin_error.
	switch {
	case errors.Is(err, sidecarapi.ErrPluginConfig), errors.Is(err, sidecarapi.ErrPluginNotFound):
		return "invalid_config"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "unavailable"
	}
	s, ok := status.FromError(err)
	if !ok {
		return "other"
	}
	switch s.Code() {
	case codes.DeadlineExceeded:
		return "timeout"
	case codes.Unavailable, codes.Canceled:
		return "unavailable"
	case codes.Internal, codes.Unknown:
		return "plugin_error"
	case codes.FailedPrecondition, codes.InvalidArgument, codes.NotFound:
		return "invalid_config"
	default:
		return "other"
	}
}

// fail applies on_error to a batch the sidecar could not process.
func (p *pythonProcessor) fail(ctx context.Context, td ptrace.Traces, reason string, err error) (ptrace.Traces, error) {
	ctx = context.WithoutCancel(ctx)
	p.telemetry.ProcessorPythonRequestsFailed.Add(ctx, 1, metric.WithAttributes(
		processorAttr(p.id), attribute.String("reason", reason)))
	spans := int64(td.SpanCount())
	if p.cfg.OnError == OnErrorReject {
		p.telemetry.ProcessorPythonSpansRejected.Add(ctx, spans, p.attrs)
		return td, &rejectError{reason: reason, cause: err}
	}
	p.telemetry.ProcessorPythonSpansPassedUnchanged.Add(ctx, spans, p.attrs)
	if p.owned == nil {
		p.logger.Warn("python sidecar failed; forwarding the batch unchanged (on_error: pass)",
			zap.String("reason", reason), zap.Int64("spans", spans), zap.Error(err))
		return td, nil
	}
	// What the plugin owns is never taken from the sender, answered or not.
	marked := p.owned.markUnprocessed(td)
	if ev := p.owned.event; ev.GetEvent() != "" && marked > 0 {
		p.telemetry.ProcessorPythonPluginEvents.Add(ctx, marked, metric.WithAttributes(
			processorAttr(p.id), attribute.String("event", ev.GetEvent()), attribute.String("reason", ev.GetReason())))
	}
	p.logger.Warn("python sidecar failed; forwarding the batch without the plugin's changes, its attributes removed and the spans marked unprocessed (on_error: pass)",
		zap.String("reason", reason), zap.Int64("spans", spans), zap.Int64("marked", marked), zap.Error(err))
	return td, nil
}
