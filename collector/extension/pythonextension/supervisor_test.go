package pythonextension

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadata"
	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadatatest"
)

// restartsOnce is the restart counter after one restart; the factory labels
// the extension's telemetry with its ID.
var restartsOnce = []metricdata.DataPoint[int64]{{Value: 1, Attributes: attribute.NewSet(attribute.String("extension", "python"))}}

// pidOf returns the pid that starts a line of the fake's log.
func pidOf(t *testing.T, line string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.Fields(line)[0])
	require.NoError(t, err)
	return pid
}

func TestStartSidecarExits(t *testing.T) {
	cfg, _ := spawnConfig(t, "exit1")
	e := newTestExtension(t, cfg)
	ctx := context.Background()

	err := e.Start(ctx, componenttest.NewNopHost())
	require.ErrorContains(t, err, fmt.Sprintf("sidecar %q exited during start-up (exit status 1); its last output:\n", cfg.Command[0]))
	assert.ErrorContains(t, err, "fatal: plugin test.broken failed to import")
	require.NoError(t, e.Shutdown(ctx))
	assert.NoDirExists(t, e.privateDir)
}

func TestStartSidecarNeverHealthy(t *testing.T) {
	cfg, logPath := spawnConfig(t, "hang")
	cfg.StartupTimeout = 300 * time.Millisecond
	e := newTestExtension(t, cfg)
	ctx := context.Background()

	err := e.Start(ctx, componenttest.NewNopHost())
	require.ErrorContains(t, err, fmt.Sprintf("sidecar %q did not become healthy within startup_timeout 300ms (health status NOT_SERVING)", cfg.Command[0]))
	p := currentProcess(e)
	assert.True(t, exited(p), "a sidecar that failed to start is killed")
	assert.Empty(t, fakeLogLines(logPath, "sigterm"), "there is nothing to drain: it is killed at once")
	require.NoError(t, e.Shutdown(ctx))
}

func TestStartCommandNotFound(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Command = []string{"/nonexistent/spancost", "sidecar"}
	e := newTestExtension(t, cfg)
	ctx := context.Background()

	err := e.Start(ctx, componenttest.NewNopHost())
	require.EqualError(t, err, `command: starting sidecar "/nonexistent/spancost": fork/exec /nonexistent/spancost: no such file or directory`)
	assert.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, e.Shutdown(ctx))
}

func TestSpawnEnvAndWorkingDir(t *testing.T) {
	cfg, logPath := spawnConfig(t, "serve")
	cfg.WorkingDir = t.TempDir()
	// env cannot move the sidecar away from the endpoint the extension dials.
	cfg.Env[envListen] = "unix:///nonexistent/elsewhere.sock"
	e := newTestExtension(t, cfg)
	ctx := context.Background()

	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	starts := fakeLogLines(logPath, "start")
	require.Len(t, starts, 1)
	assert.Equal(t, fmt.Sprintf("%d start wd=%s", currentProcess(e).cmd.Process.Pid, cfg.WorkingDir), starts[0])
	require.NoError(t, e.Shutdown(ctx))
}

func TestSpawnOnLoopbackPort(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	endpoint := lis.Addr().String()
	require.NoError(t, lis.Close())

	cfg, _ := spawnConfig(t, "serve")
	cfg.Endpoint = endpoint
	e := newTestExtension(t, cfg)
	ctx := context.Background()

	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	assert.Empty(t, e.privateDir, "no private directory for a TCP endpoint")
	_, err = e.Register(ctx, testInstance, echoPlugin, "{}")
	require.NoError(t, err)
	require.NoError(t, e.Shutdown(ctx))
}

func TestRestartAfterKill(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg, logPath := spawnConfig(t, "serve")
	e := newTestExtensionWithSettings(t, cfg, metadatatest.NewSettings(tt))
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })
	_, err := e.Register(ctx, testInstance, echoPlugin, `{"rate":0.5}`)
	require.NoError(t, err)
	first := currentProcess(e)

	require.NoError(t, syscall.Kill(first.cmd.Process.Pid, syscall.SIGKILL))

	// The restarted sidecar is configured before it gets a batch.
	require.Eventually(t, func() bool { return len(fakeLogLines(logPath, "configure")) == 2 }, 10*time.Second, 10*time.Millisecond)
	configures := fakeLogLines(logPath, "configure")
	second := pidOf(t, configures[1])
	assert.NotEqual(t, first.cmd.Process.Pid, second)
	assert.Equal(t, fmt.Sprintf(`%d configure python/test test.echo {"rate":0.5}`, second), configures[1])
	assert.Equal(t, second, currentProcess(e).cmd.Process.Pid)
	metadatatest.AssertEqualExtensionPythonSidecarRestarts(t, tt, restartsOnce, metricdatatest.IgnoreTimestamp())

	resp, err := e.ProcessTraces(ctx, testInstance, []byte("batch"))
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(second), resp.GetEvents()[0].GetReason(), "answered by the restarted sidecar")
	assert.Len(t, fakeLogLines(logPath, "configure"), 2, "the replay already configured the instance")
}

func TestRestartAfterFailedHealthChecks(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg, logPath := spawnConfig(t, "unhealthy-after-3")
	e := newTestExtensionWithSettings(t, cfg, metadatatest.NewSettings(tt))
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })
	_, err := e.Register(ctx, testInstance, echoPlugin, "{}")
	require.NoError(t, err)
	first := currentProcess(e)

	require.Eventually(t, func() bool { return len(fakeLogLines(logPath, "configure")) == 2 }, 10*time.Second, 10*time.Millisecond)
	assert.True(t, exited(first), "the unhealthy sidecar was killed")
	assert.Empty(t, fakeLogLines(logPath, "sigterm"), "an unhealthy sidecar is killed, not asked")
	metadatatest.AssertEqualExtensionPythonSidecarRestarts(t, tt, restartsOnce, metricdatatest.IgnoreTimestamp())
	_, err = e.ProcessTraces(ctx, testInstance, []byte("batch"))
	require.NoError(t, err)
}

func TestShutdownWhileRestartsFail(t *testing.T) {
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	cfg, logPath := spawnConfig(t, "serve-once")
	e := newTestExtensionWithSettings(t, cfg, metadatatest.NewSettings(tt))
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))

	require.NoError(t, syscall.Kill(currentProcess(e).cmd.Process.Pid, syscall.SIGKILL))
	require.Eventually(t, func() bool { return len(fakeLogLines(logPath, "start")) >= 3 }, 10*time.Second, 10*time.Millisecond)

	began := time.Now()
	require.NoError(t, e.Shutdown(ctx))
	assert.Less(t, time.Since(began), cfg.ShutdownGracePeriod, "nothing to wait for: no sidecar is running")
	restarts, err := tt.GetMetric("otelcol_extension_python_sidecar_restarts")
	require.NoError(t, err)
	assert.GreaterOrEqual(t, restarts.Data.(metricdata.Sum[int64]).DataPoints[0].Value, int64(2))
}

func TestShutdownStopsSidecarGracefully(t *testing.T) {
	cfg, logPath := spawnConfig(t, "serve")
	e := newTestExtension(t, cfg)
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	p := currentProcess(e)

	began := time.Now()
	require.NoError(t, e.Shutdown(ctx))
	assert.Less(t, time.Since(began), cfg.ShutdownGracePeriod)
	assert.Equal(t, []string{fmt.Sprintf("%d sigterm", p.cmd.Process.Pid)}, fakeLogLines(logPath, "sigterm"))
	assert.True(t, exited(p))
	require.NoError(t, p.waitErr)
	assert.ErrorIs(t, syscall.Kill(p.cmd.Process.Pid, 0), syscall.ESRCH, "the process is gone and reaped")
}

func TestShutdownKillsSidecarIgnoringSIGTERM(t *testing.T) {
	cfg, logPath := spawnConfig(t, "ignore-term")
	cfg.ShutdownGracePeriod = 300 * time.Millisecond
	e := newTestExtension(t, cfg)
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	p := currentProcess(e)

	began := time.Now()
	require.NoError(t, e.Shutdown(ctx))
	assert.GreaterOrEqual(t, time.Since(began), cfg.ShutdownGracePeriod)
	assert.Len(t, fakeLogLines(logPath, "sigterm"), 1)
	assert.True(t, exited(p))
	assert.EqualError(t, p.waitErr, "signal: killed")
}

func TestShutdownContextCutsGracePeriod(t *testing.T) {
	cfg, _ := spawnConfig(t, "ignore-term")
	cfg.ShutdownGracePeriod = time.Minute
	e := newTestExtension(t, cfg)
	require.NoError(t, e.Start(context.Background(), componenttest.NewNopHost()))
	p := currentProcess(e)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.NoError(t, e.Shutdown(ctx))
	assert.True(t, exited(p), "the sidecar is killed when the collector's shutdown deadline comes first")
}

func TestTail(t *testing.T) {
	tl := newTail(2)
	assert.Equal(t, "(no output)", tl.String())
	var wg sync.WaitGroup
	wg.Add(1)
	tl.copyLines(&wg, strings.NewReader("one\ntwo\nthree\n"), zap.NewNop())
	wg.Wait()
	assert.Equal(t, "two\nthree", tl.String())
}

// killOnce starts the extension on cfg with an observed error log, SIGKILLs its
// sidecar, and waits for the log line containing want.
func killOnce(t *testing.T, cfg *Config, want string) {
	t.Helper()
	core, logs := observer.New(zapcore.ErrorLevel)
	set := extensiontest.NewNopSettings(metadata.Type)
	set.Logger = zap.New(core)
	e := newTestExtensionWithSettings(t, cfg, set)
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })
	require.NoError(t, syscall.Kill(currentProcess(e).cmd.Process.Pid, syscall.SIGKILL))
	require.Eventually(t, func() bool {
		return logs.FilterMessageSnippet(want).Len() == 1
	}, 20*time.Second, 10*time.Millisecond)
}

func TestNoRestartWhenRestartIsNotEnabled(t *testing.T) {
	cfg, logPath := spawnConfig(t, "serve")
	cfg.Restart.Enabled = false
	killOnce(t, cfg, "restart is not enabled")
	assert.Len(t, fakeLogLines(logPath, "start"), 1, "started once, never again")
}

func TestRestartGivesUpAfterMaxElapsedTime(t *testing.T) {
	cfg, logPath := spawnConfig(t, "serve-once")
	cfg.Restart.MaxElapsedTime = 200 * time.Millisecond
	killOnce(t, cfg, "giving up")
	assert.Greater(t, len(fakeLogLines(logPath, "start")), 2, "it tried again before giving up")
}
