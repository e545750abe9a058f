package pythonextension

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadata"
	"github.com/spancost/spancost/collector/internal/wirepb"
)

// The fake sidecar is the test double of `spancost sidecar`. Tests run it in
// process (connect mode) or as a child process (spawn mode): the extension
// then runs this test binary, and init turns it into the sidecar when it finds
// FAKE_SIDECAR_MODE in its environment.
const (
	// envFakeMode selects the child's behaviour:
	//   serve                 serve until SIGTERM, then stop gracefully and exit 0
	//   exit1                 print two lines and exit 1 without serving
	//   hang                  listen, but never report SERVING
	//   ignore-term           serve and ignore SIGTERM
	//   unhealthy-after-N     the first run reports NOT_SERVING after N health
	//                         checks; later runs (restarts) serve normally
	//   serve-once            the first run serves; later runs exit 1 at once
	envFakeMode = "FAKE_SIDECAR_MODE"
	// envFakeLog names a file the child appends what it did to, one
	// "<pid> <event> ..." line at a time.
	envFakeLog = "FAKE_SIDECAR_LOG"

	// Plugins the fake knows: echo returns each batch as it came, crash
	// fails with INTERNAL. Any other plugin name is NOT_FOUND; a configuration
	// holding a negative number is INVALID_ARGUMENT. A configuration holding
	// "prices" owns cost.usd and cost.unpriced_reason (and trusts upstream
	// prices with "trust_upstream"); a sink's holding "books" needs an owner
	// of both.
	echoPlugin      = "test.echo"
	crashPlugin     = "test.crash"
	rejectedMessage = "rate: must be between 0 and 1"
)

func init() {
	switch mode := os.Getenv(envFakeMode); mode {
	case "":
	case "collector":
		os.Exit(runFakeCollector())
	default:
		os.Exit(runFakeSidecarProcess(mode))
	}
}

type fakeSidecar struct {
	wirepb.UnimplementedSidecarServer
	healthpb.UnimplementedHealthServer

	log func(format string, args ...any)

	mu             sync.Mutex
	serving        bool
	unhealthyAfter int // health checks answered SERVING before NOT_SERVING; 0: no limit
	checks         int
	instances      map[string]*wirepb.ConfigureRequest
	configures     []*wirepb.ConfigureRequest
	stats          *wirepb.StatsResponse
}

func newFakeSidecar() *fakeSidecar {
	return &fakeSidecar{serving: true, instances: map[string]*wirepb.ConfigureRequest{}, log: func(string, ...any) {}}
}

func (f *fakeSidecar) Configure(_ context.Context, req *wirepb.ConfigureRequest) (*wirepb.ConfigureResponse, error) {
	err := f.configure(req)
	// Logged once the instance is known, so a test that sees the line can
	// rely on it.
	f.log("configure %s %s %s", req.GetInstance(), req.GetPlugin(), req.GetConfigJson())
	if err != nil {
		return nil, err
	}
	resp := &wirepb.ConfigureResponse{PluginVersion: "fake 0.0.0"}
	if strings.Contains(req.GetConfigJson(), "warn") {
		resp.Warnings = []string{"database not reachable yet"}
	}
	// As spancost.cost and spancost.totals declare what they own and book.
	if strings.Contains(req.GetConfigJson(), "prices") {
		resp.Ownership = &wirepb.Ownership{Keys: []string{"cost.usd", "cost.unpriced_reason"}}
		if strings.Contains(req.GetConfigJson(), "trust_upstream") {
			resp.Ownership.TrustedKey = "cost.usd"
		}
	}
	if req.GetKind() == wirepb.Kind_KIND_SINK && strings.Contains(req.GetConfigJson(), "books") {
		resp.NeedsOwner = []string{"cost.usd", "cost.unpriced_reason"}
	}
	return resp, nil
}

func (f *fakeSidecar) Stats(context.Context, *wirepb.StatsRequest) (*wirepb.StatsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stats != nil {
		return f.stats, nil
	}
	// By default, every sink configured in this process, with nothing counted.
	resp := &wirepb.StatsResponse{}
	for name, req := range f.instances {
		if req.GetKind() == wirepb.Kind_KIND_SINK {
			resp.Sinks = append(resp.Sinks, &wirepb.SinkStats{Sink: name})
		}
	}
	return resp, nil
}

func (f *fakeSidecar) setStats(stats *wirepb.StatsResponse) {
	f.mu.Lock()
	f.stats = stats
	f.mu.Unlock()
}

func (f *fakeSidecar) configure(req *wirepb.ConfigureRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.configures = append(f.configures, req)
	switch {
	case req.GetPlugin() == crashPlugin:
		return status.Error(codes.Internal, "plugin crashed")
	case req.GetPlugin() != echoPlugin:
		return status.Errorf(codes.NotFound, "no plugin named %s in spancost.processors", req.GetPlugin())
	case strings.Contains(req.GetConfigJson(), "-"):
		return status.Error(codes.InvalidArgument, rejectedMessage)
	}
	f.instances[req.GetInstance()] = req
	return nil
}

func (f *fakeSidecar) ProcessTraces(_ context.Context, req *wirepb.ProcessTracesRequest) (*wirepb.ProcessTracesResponse, error) {
	f.mu.Lock()
	_, ok := f.instances[req.GetInstance()]
	f.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "instance %q is not configured", req.GetInstance())
	}
	return &wirepb.ProcessTracesResponse{
		Result: &wirepb.ProcessTracesResponse_Traces{Traces: req.GetTraces()},
		Events: []*wirepb.PluginEvent{{Event: "echoed", Reason: strconv.Itoa(os.Getpid()), Spans: 1}},
	}, nil
}

func (f *fakeSidecar) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if req.GetService() != sidecarService {
		return nil, status.Errorf(codes.NotFound, "unknown service %q", req.GetService())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	if !f.serving || (f.unhealthyAfter > 0 && f.checks > f.unhealthyAfter) {
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}, nil
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (f *fakeSidecar) setServing(serving bool) {
	f.mu.Lock()
	f.serving = serving
	f.mu.Unlock()
}

// forget makes the fake lose its instances, as a sidecar restarted behind
// the collector's back would.
func (f *fakeSidecar) forget() {
	f.mu.Lock()
	f.instances = map[string]*wirepb.ConfigureRequest{}
	f.mu.Unlock()
}

func (f *fakeSidecar) configureCalls() []*wirepb.ConfigureRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*wirepb.ConfigureRequest(nil), f.configures...)
}

func (f *fakeSidecar) register(srv *grpc.Server) {
	wirepb.RegisterSidecarServer(srv, f)
	healthpb.RegisterHealthServer(srv, f)
}

// startFakeSidecar serves f in this process on network/address ("tcp",
// "127.0.0.1:0" or "unix", "/path") and returns the endpoint to configure.
func startFakeSidecar(t *testing.T, f *fakeSidecar, network, address string) string {
	t.Helper()
	lis, err := net.Listen(network, address)
	require.NoError(t, err)
	srv := grpc.NewServer()
	f.register(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	if network == "unix" {
		return unixScheme + address
	}
	return lis.Addr().String()
}

// fakeLog appends a line to the child's log.
func fakeLog(format string, args ...any) {
	path := os.Getenv(envFakeLog)
	if path == "" {
		return
	}
	file, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer file.Close()
	fmt.Fprintf(file, "%d "+format+"\n", append([]any{os.Getpid()}, args...)...)
}

// runFakeSidecarProcess is the child's main.
func runFakeSidecarProcess(mode string) int {
	earlierRuns := len(fakeLogLines(os.Getenv(envFakeLog), "start"))
	wd, _ := os.Getwd()
	fakeLog("start wd=%s", wd)

	if mode == "exit1" || (mode == "serve-once" && earlierRuns > 0) {
		fmt.Println("loading plugins")
		fmt.Fprintln(os.Stderr, "fatal: plugin test.broken failed to import")
		return 1
	}
	ep, err := parseEndpoint(os.Getenv(envListen))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad listen address:", err)
		return 2
	}
	network, address := "tcp", ep.hostPort
	if ep.socketPath != "" {
		network, address = "unix", ep.socketPath
	}
	lis, err := net.Listen(network, address)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		return 2
	}
	if ep.socketPath != "" {
		_ = os.Chmod(ep.socketPath, 0o600)
	}

	f := newFakeSidecar()
	f.log = fakeLog
	switch {
	case mode == "hang":
		f.serving = false
	case strings.HasPrefix(mode, "unhealthy-after-"):
		if earlierRuns == 0 {
			f.unhealthyAfter, _ = strconv.Atoi(strings.TrimPrefix(mode, "unhealthy-after-"))
		}
	}
	// Handle SIGTERM before serving: once it answers health checks the
	// extension may stop it at any moment.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	srv := grpc.NewServer()
	f.register(srv)
	go func() { _ = srv.Serve(lis) }()
	for range sigs {
		if mode == "ignore-term" {
			fakeLog("sigterm ignored")
			continue
		}
		fakeLog("sigterm")
		srv.GracefulStop()
		return 0
	}
	return 0
}

// runFakeCollector is the main of a child that plays the collector: it
// starts the extension, which spawns a fake sidecar, and waits to be killed.
func runFakeCollector() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := createDefaultConfig().(*Config)
	cfg.Command = []string{self}
	cfg.Env = map[string]string{envFakeMode: "serve", envFakeLog: os.Getenv(envFakeLog), "GORACE": os.Getenv("GORACE")}
	e, err := newExtension(cfg, extensiontest.NewNopSettings(metadata.Type))
	if err == nil {
		err = e.Start(context.Background(), componenttest.NewNopHost())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fakeLog("ready")
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	<-sigs
	return 0
}

// fakeLogLines returns the lines of the child's log whose event is event, as
// "<pid> <rest>" strings.
func fakeLogLines(path, event string) []string {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var lines []string
	for line := range strings.Lines(string(b)) {
		fields := strings.SplitN(strings.TrimSpace(line), " ", 3)
		if len(fields) >= 2 && fields[1] == event {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	return lines
}

// spawnConfig configures the extension to run this test binary as a fake
// sidecar in mode, with timings short enough for unit tests. It returns the
// child's log file.
func spawnConfig(t *testing.T, mode string) (*Config, string) {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	logPath := filepath.Join(t.TempDir(), "sidecar.log")
	cfg := createDefaultConfig().(*Config)
	cfg.Command = []string{self}
	cfg.Env = map[string]string{
		envFakeMode: mode,
		envFakeLog:  logPath,
		// A binary built with -race sleeps a second at exit by default.
		"GORACE": strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0"),
	}
	cfg.StartupTimeout = 10 * time.Second
	cfg.HealthCheck = HealthCheckConfig{Interval: 50 * time.Millisecond, Timeout: time.Second, FailureThreshold: 3}
	cfg.Restart.InitialInterval, cfg.Restart.MaxInterval = 10*time.Millisecond, 100*time.Millisecond
	cfg.ShutdownGracePeriod = 5 * time.Second
	return cfg, logPath
}

// connectConfig configures the extension to connect to a sidecar at endpoint.
func connectConfig(endpoint string) *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.Endpoint = endpoint
	cfg.StartupTimeout = 5 * time.Second
	cfg.HealthCheck = HealthCheckConfig{Interval: 20 * time.Millisecond, Timeout: time.Second, FailureThreshold: 3}
	return cfg
}
