package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadata"
	"github.com/spancost/spancost/collector/internal/wirepb"
	"github.com/spancost/spancost/collector/sidecarapi"
)

const (
	// envListen tells a spawned sidecar where to listen.
	envListen = "SPANCOST_SIDECAR_LISTEN"
	// sidecarService is the grpc.health.v1 service name the sidecar reports.
	sidecarService = "spancost.wire.v1.Sidecar"
)

type registration struct {
	plugin, configJSON string
}

// configured is what the sidecar answered when a registration was configured.
type configured struct {
	registration
	ownership *wirepb.Ownership // processors: what the plugin owns
	needs     []string          // sinks: the attributes they book as facts
}

// regKey names a registration: processors and sinks have separate names.
type regKey struct {
	kind     wirepb.Kind
	instance string
}

type pythonExtension struct {
	cfg       *Config
	set       extension.Settings
	telemetry *metadata.TelemetryBuilder

	privateDir string
	conn       *grpc.ClientConn
	client     wirepb.SidecarClient
	health     healthpb.HealthClient
	super      *supervisor // nil when connecting to a running sidecar
	stopHealth context.CancelFunc
	healthDone chan struct{}

	mu            sync.Mutex
	registrations map[regKey]configured
	codec         requestCodec
	streams       *streamPool

	sinks *sinkStats // nil without sinks
}

var _ sidecarapi.Sidecar = (*pythonExtension)(nil)

func newExtension(cfg *Config, set extension.Settings) (*pythonExtension, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return &pythonExtension{cfg: cfg, set: set, telemetry: tb, registrations: map[regKey]configured{}, codec: newRequestCodec()}, nil
}

func (e *pythonExtension) Start(ctx context.Context, _ component.Host) error {
	ep, err := e.resolveEndpoint()
	if err != nil {
		return err
	}
	e.conn, err = grpc.NewClient(ep.target(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(e.cfg.MaxMessageBytes), grpc.MaxCallSendMsgSize(e.cfg.MaxMessageBytes)),
		// A restarted sidecar must be reachable again within a second, not
		// after gRPC's default reconnect backoff of up to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}),
	)
	if err != nil {
		return fmt.Errorf("endpoint %q: %w", ep, err)
	}
	e.client = wirepb.NewSidecarClient(e.conn)
	e.health = healthpb.NewHealthClient(e.conn)
	e.streams = newStreamPool(func(ctx context.Context) (traceStream, error) {
		return e.client.ProcessTracesStream(ctx, grpc.ForceCodecV2(e.codec))
	})

	if len(e.cfg.Command) > 0 {
		e.super = newSupervisor(e.cfg, ep, e.set, e.checkHealth, e.replay, e.telemetry)
		if err := e.super.start(ctx); err != nil {
			return err
		}
		return e.startSinks(ctx)
	}
	// A sidecar container may start after the collector: wait for it as long
	// as startup_timeout allows, then keep watching its health.
	waitCtx, cancel := context.WithTimeout(ctx, e.cfg.StartupTimeout)
	defer cancel()
	if err := waitHealthy(waitCtx, e.checkHealth, nil); err != nil {
		return fmt.Errorf("sidecar at endpoint %q is not serving after startup_timeout %s: %w", ep, e.cfg.StartupTimeout, err)
	}
	hctx, stop := context.WithCancel(context.Background())
	e.stopHealth, e.healthDone = stop, make(chan struct{})
	go e.watchConnected(hctx)
	return e.startSinks(ctx)
}

// resolveEndpoint returns the configured endpoint or, for a spawned sidecar,
// a socket in a new directory only this user can enter.
func (e *pythonExtension) resolveEndpoint() (endpoint, error) {
	if e.cfg.Endpoint != "" {
		return parseEndpoint(e.cfg.Endpoint)
	}
	dir, err := os.MkdirTemp("", "spancost-sidecar-")
	if err != nil {
		return endpoint{}, fmt.Errorf("creating the private socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		_ = os.RemoveAll(dir)
		return endpoint{}, fmt.Errorf("securing the private socket directory: %w", err)
	}
	e.privateDir = dir
	return endpoint{socketPath: filepath.Join(dir, "sidecar.sock")}, nil
}

func (e *pythonExtension) Shutdown(ctx context.Context) error {
	var errs []error
	if e.stopHealth != nil {
		e.stopHealth()
		<-e.healthDone
	}
	if e.sinks != nil {
		e.sinks.stop()
	}
	if e.streams != nil {
		e.streams.reset()
	}
	if e.super != nil {
		errs = append(errs, e.super.stop(ctx))
	}
	if e.conn != nil {
		errs = append(errs, e.conn.Close())
	}
	if e.privateDir != "" {
		errs = append(errs, os.RemoveAll(e.privateDir))
	}
	e.telemetry.Shutdown()
	return errors.Join(errs...)
}

// checkHealth asks grpc.health.v1 whether the sidecar service is SERVING.
func (e *pythonExtension) checkHealth(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.HealthCheck.Timeout)
	defer cancel()
	resp, err := e.health.Check(ctx, &healthpb.HealthCheckRequest{Service: sidecarService})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health status %s", resp.GetStatus())
	}
	return nil
}

// watchConnected reports health changes of a sidecar the collector does not own.
func (e *pythonExtension) watchConnected(ctx context.Context) {
	defer close(e.healthDone)
	ticker := time.NewTicker(e.cfg.HealthCheck.Interval)
	defer ticker.Stop()
	healthy := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		err := e.checkHealth(ctx)
		switch {
		case err != nil && healthy:
			e.set.Logger.Warn("sidecar stopped answering health checks; batches fail over to on_error until it is back", zap.Error(err))
		case err == nil && !healthy:
			e.set.Logger.Info("sidecar is serving again")
		}
		healthy = err == nil
	}
}

func (e *pythonExtension) Register(ctx context.Context, instance, plugin, configJSON string) (*wirepb.Ownership, error) {
	key := regKey{kind: wirepb.Kind_KIND_PROCESSOR, instance: instance}
	r := registration{plugin: plugin, configJSON: configJSON}
	// The extension configured the processors of the pipelines it checked
	// (checkPipelines) moments ago: the same registration is not made twice.
	e.mu.Lock()
	done, ok := e.registrations[key]
	e.mu.Unlock()
	if ok && done.registration == r {
		return done.ownership, nil
	}
	c, err := e.register(ctx, key, r)
	return c.ownership, err
}

func (e *pythonExtension) register(ctx context.Context, key regKey, r registration) (configured, error) {
	c, err := e.configure(ctx, key, r)
	if err != nil {
		return configured{}, err
	}
	e.mu.Lock()
	e.registrations[key] = c
	e.mu.Unlock()
	return c, nil
}

func (e *pythonExtension) Unregister(instance string) {
	e.mu.Lock()
	delete(e.registrations, regKey{kind: wirepb.Kind_KIND_PROCESSOR, instance: instance})
	e.mu.Unlock()
}

func (e *pythonExtension) configure(ctx context.Context, key regKey, r registration) (configured, error) {
	resp, err := e.client.Configure(ctx, &wirepb.ConfigureRequest{Instance: key.instance, Plugin: r.plugin, ConfigJson: r.configJSON, Kind: key.kind})
	switch status.Code(err) {
	case codes.OK:
		for _, warning := range resp.GetWarnings() {
			e.set.Logger.Warn("sidecar plugin reported a problem", zap.String("instance", key.instance), zap.String("plugin", r.plugin), zap.String("warning", warning))
		}
		return configured{registration: r, ownership: resp.GetOwnership(), needs: resp.GetNeedsOwner()}, nil
	case codes.NotFound:
		return configured{}, fmt.Errorf("%w: %s", sidecarapi.ErrPluginNotFound, status.Convert(err).Message())
	case codes.InvalidArgument:
		return configured{}, fmt.Errorf("%w: %s", sidecarapi.ErrPluginConfig, status.Convert(err).Message())
	default:
		return configured{}, fmt.Errorf("configuring plugin %q in the sidecar: %w", r.plugin, err)
	}
}

// replay configures a freshly started sidecar with every registered instance.
func (e *pythonExtension) replay(ctx context.Context) error {
	e.streams.reset() // open to the sidecar that is gone
	e.mu.Lock()
	regs := make(map[regKey]registration, len(e.registrations))
	for k, v := range e.registrations {
		regs[k] = v.registration
	}
	e.mu.Unlock()
	var errs []error
	for key, r := range regs {
		if _, err := e.configure(ctx, key, r); err != nil {
			errs = append(errs, fmt.Errorf("instance %q: %w", key.instance, err))
		}
	}
	return errors.Join(errs...)
}

func (e *pythonExtension) ProcessTraces(ctx context.Context, instance string, traces []byte) (*wirepb.ProcessTracesResponse, error) {
	req := &wirepb.ProcessTracesRequest{Instance: instance, Traces: traces}
	resp, err := e.send(ctx, req)
	if status.Code(err) != codes.FailedPrecondition {
		return resp, err
	}
	key := regKey{kind: wirepb.Kind_KIND_PROCESSOR, instance: instance}
	e.mu.Lock()
	r, ok := e.registrations[key]
	e.mu.Unlock()
	if !ok {
		return nil, err
	}
	if _, cerr := e.configure(ctx, key, r.registration); cerr != nil {
		return nil, fmt.Errorf("configuring instance %q again after the sidecar lost it: %w", instance, cerr)
	}
	return e.send(ctx, req)
}

// send is one batch's round trip: on a stream, or as a unary call to a
// sidecar that has no ProcessTracesStream.
func (e *pythonExtension) send(ctx context.Context, req *wirepb.ProcessTracesRequest) (*wirepb.ProcessTracesResponse, error) {
	if !e.streams.unimplemented.Load() {
		resp, err := e.streams.roundTrip(ctx, req)
		if status.Code(err) != codes.Unimplemented {
			return resp, err
		}
		if !e.streams.unimplemented.Swap(true) {
			e.set.Logger.Info("the sidecar has no ProcessTracesStream (an older spancost); sending each batch as a call of its own")
		}
	}
	return e.client.ProcessTraces(ctx, req, grpc.ForceCodecV2(e.codec))
}
