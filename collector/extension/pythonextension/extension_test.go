package pythonextension

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadata"
	"github.com/spancost/spancost/collector/internal/wirepb"
	"github.com/spancost/spancost/collector/sidecarapi"
)

const testInstance = "python/test"

func newTestExtension(t *testing.T, cfg *Config) *pythonExtension {
	t.Helper()
	return newTestExtensionWithSettings(t, cfg, extensiontest.NewNopSettings(metadata.Type))
}

func newTestExtensionWithSettings(t *testing.T, cfg *Config, set extension.Settings) *pythonExtension {
	t.Helper()
	require.NoError(t, cfg.Validate())
	ext, err := NewFactory().Create(context.Background(), set, cfg)
	require.NoError(t, err)
	e := ext.(*pythonExtension)
	// Should a test stop before its Shutdown, leave no socket directory behind.
	t.Cleanup(func() {
		if e.privateDir != "" {
			_ = os.RemoveAll(e.privateDir)
		}
	})
	return e
}

// currentProcess is the sidecar process the supervisor runs now.
func currentProcess(e *pythonExtension) *process {
	e.super.mu.Lock()
	defer e.super.mu.Unlock()
	return e.super.proc
}

func exited(p *process) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func TestSpawnLifecycle(t *testing.T) {
	cfg, logPath := spawnConfig(t, "serve")
	e := newTestExtension(t, cfg)
	ctx := context.Background()

	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	p := currentProcess(e)
	pid := p.cmd.Process.Pid

	dir, err := os.Stat(e.privateDir)
	require.NoError(t, err)
	assert.True(t, dir.IsDir())
	assert.Equal(t, os.FileMode(0o700), dir.Mode().Perm(), "the socket directory must be private")
	sock, err := os.Stat(filepath.Join(e.privateDir, "sidecar.sock"))
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket, sock.Mode().Type())

	_, err = e.Register(ctx, testInstance, echoPlugin, `{"rate":0.5}`)
	require.NoError(t, err)
	assert.Equal(t, []string{fmt.Sprintf(`%d configure python/test test.echo {"rate":0.5}`, pid)},
		fakeLogLines(logPath, "configure"))

	resp, err := e.ProcessTraces(ctx, testInstance, []byte("batch"))
	require.NoError(t, err)
	assert.Equal(t, []byte("batch"), resp.GetTraces())
	assert.True(t, e.streams.unimplemented.Load(), "the fake sidecar has no stream: the batch went as a call of its own")

	require.NoError(t, e.Shutdown(ctx))
	assert.Equal(t, []string{fmt.Sprintf("%d sigterm", pid)}, fakeLogLines(logPath, "sigterm"))
	assert.True(t, exited(p), "Shutdown must wait for the sidecar to exit")
	require.NoError(t, p.waitErr, "the sidecar stopped gracefully")
	assert.NoDirExists(t, e.privateDir)
}

func TestRegister(t *testing.T) {
	fake := newFakeSidecar()
	e := newTestExtension(t, connectConfig(startFakeSidecar(t, fake, "tcp", "127.0.0.1:0")))
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })

	tests := []struct {
		name       string
		plugin     string
		configJSON string
		wantIs     error
		wantErr    string
	}{
		{
			name:       "accepted",
			plugin:     echoPlugin,
			configJSON: `{"rate":0.5}`,
		},
		{
			name:       "plugin not found",
			plugin:     "test.missing",
			configJSON: "{}",
			wantIs:     sidecarapi.ErrPluginNotFound,
			wantErr:    "plugin not found: no plugin named test.missing in spancost.processors",
		},
		{
			name:       "configuration rejected",
			plugin:     echoPlugin,
			configJSON: `{"rate":-1}`,
			wantIs:     sidecarapi.ErrPluginConfig,
			wantErr:    "invalid plugin configuration: " + rejectedMessage,
		},
		{
			name:       "plugin fails",
			plugin:     crashPlugin,
			configJSON: "{}",
			wantErr:    `configuring plugin "test.crash" in the sidecar: rpc error: code = Internal desc = plugin crashed`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			instance := "python/" + tt.name
			before := len(fake.configureCalls())
			_, err := e.Register(ctx, instance, tt.plugin, tt.configJSON)

			calls := fake.configureCalls()
			require.Len(t, calls, before+1)
			assert.Equal(t, instance, calls[before].GetInstance())
			assert.Equal(t, tt.plugin, calls[before].GetPlugin())
			assert.Equal(t, tt.configJSON, calls[before].GetConfigJson())

			e.mu.Lock()
			_, kept := e.registrations[regKey{kind: wirepb.Kind_KIND_PROCESSOR, instance: instance}]
			e.mu.Unlock()
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.True(t, kept, "an accepted registration is kept for replay")
				return
			}
			require.EqualError(t, err, tt.wantErr)
			if tt.wantIs != nil {
				assert.ErrorIs(t, err, tt.wantIs)
			}
			assert.False(t, kept, "a refused registration must not be replayed")
		})
	}
}

func TestProcessTracesConfiguresLostInstanceAgain(t *testing.T) {
	fake := newFakeSidecar()
	e := newTestExtension(t, connectConfig(startFakeSidecar(t, fake, "tcp", "127.0.0.1:0")))
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })
	_, err := e.Register(ctx, testInstance, echoPlugin, `{"rate":0.5}`)
	require.NoError(t, err)

	fake.forget()
	resp, err := e.ProcessTraces(ctx, testInstance, []byte("batch"))
	require.NoError(t, err)
	assert.Equal(t, []byte("batch"), resp.GetTraces())
	calls := fake.configureCalls()
	require.Len(t, calls, 2, "configured once at Register and once after FAILED_PRECONDITION")
	assert.Equal(t, calls[0].GetConfigJson(), calls[1].GetConfigJson())

	// An instance nobody registered is not invented.
	e.Unregister(testInstance)
	fake.forget()
	_, err = e.ProcessTraces(ctx, testInstance, []byte("batch"))
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Len(t, fake.configureCalls(), 2)
}

func TestProcessTracesReconfigureRefused(t *testing.T) {
	fake := newFakeSidecar()
	e := newTestExtension(t, connectConfig(startFakeSidecar(t, fake, "tcp", "127.0.0.1:0")))
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })

	// The sidecar lost the instance and, after an upgrade, refuses its
	// configuration: the batch fails with the reason, it is not retried forever.
	e.mu.Lock()
	e.registrations[regKey{kind: wirepb.Kind_KIND_PROCESSOR, instance: testInstance}] = configured{registration: registration{plugin: echoPlugin, configJSON: `{"rate":-1}`}}
	e.mu.Unlock()
	_, err := e.ProcessTraces(ctx, testInstance, []byte("batch"))
	require.EqualError(t, err, `configuring instance "python/test" again after the sidecar lost it: invalid plugin configuration: `+rejectedMessage)
	assert.ErrorIs(t, err, sidecarapi.ErrPluginConfig)
	assert.Len(t, fake.configureCalls(), 1)
}

func TestConnect(t *testing.T) {
	tests := []struct {
		name    string
		network string
		address func(t *testing.T) string
	}{
		{
			name:    "loopback tcp",
			network: "tcp",
			address: func(*testing.T) string { return "127.0.0.1:0" },
		},
		{
			name:    "unix socket",
			network: "unix",
			address: func(t *testing.T) string { return filepath.Join(t.TempDir(), "sidecar.sock") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFakeSidecar()
			endpoint := startFakeSidecar(t, fake, tt.network, tt.address(t))
			e := newTestExtension(t, connectConfig(endpoint))
			ctx := context.Background()

			require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
			assert.Nil(t, e.super, "a connected sidecar is not supervised")
			assert.Empty(t, e.privateDir)
			_, err := e.Register(ctx, testInstance, echoPlugin, "{}")
			require.NoError(t, err)
			resp, err := e.ProcessTraces(ctx, testInstance, []byte("batch"))
			require.NoError(t, err)
			assert.Equal(t, []*wirepb.PluginEvent{{Event: "echoed", Reason: fmt.Sprint(os.Getpid()), Spans: 1}}, resp.GetEvents())
			require.NoError(t, e.Shutdown(ctx))
		})
	}
}

func TestConnectWaitsForSidecar(t *testing.T) {
	// The sidecar container may start after the collector: nothing listens
	// yet, then the socket appears, then the sidecar reports SERVING.
	socket := filepath.Join(t.TempDir(), "sidecar.sock")
	fake := newFakeSidecar()
	fake.setServing(false)
	e := newTestExtension(t, connectConfig(unixScheme+socket))
	ctx := context.Background()
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })

	srv := grpc.NewServer()
	fake.register(srv)
	served := make(chan struct{})
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	go func() {
		defer close(served)
		time.Sleep(100 * time.Millisecond)
		lis, err := net.Listen("unix", socket)
		if !assert.NoError(t, err) {
			return
		}
		time.AfterFunc(100*time.Millisecond, func() { fake.setServing(true) })
		_ = srv.Serve(lis)
	}()
	began := time.Now()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	assert.GreaterOrEqual(t, time.Since(began), 200*time.Millisecond)
}

func TestConnectNotServing(t *testing.T) {
	fake := newFakeSidecar()
	fake.setServing(false)
	endpoint := startFakeSidecar(t, fake, "tcp", "127.0.0.1:0")
	cfg := connectConfig(endpoint)
	cfg.StartupTimeout = 200 * time.Millisecond
	e := newTestExtension(t, cfg)
	ctx := context.Background()

	err := e.Start(ctx, componenttest.NewNopHost())
	require.EqualError(t, err, fmt.Sprintf("sidecar at endpoint %q is not serving after startup_timeout 200ms: health status NOT_SERVING", endpoint))
	require.NoError(t, e.Shutdown(ctx))
}

func TestConnectedHealthChangesAreLogged(t *testing.T) {
	fake := newFakeSidecar()
	core, logs := observer.New(zapcore.InfoLevel)
	set := extensiontest.NewNopSettings(metadata.Type)
	set.Logger = zap.New(core)
	e := newTestExtensionWithSettings(t, connectConfig(startFakeSidecar(t, fake, "tcp", "127.0.0.1:0")), set)
	ctx := context.Background()
	require.NoError(t, e.Start(ctx, componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, e.Shutdown(ctx)) })

	fake.setServing(false)
	require.Eventually(t, func() bool {
		return logs.FilterMessageSnippet("stopped answering health checks").FilterLevelExact(zapcore.WarnLevel).Len() == 1
	}, 5*time.Second, 10*time.Millisecond)
	fake.setServing(true)
	require.Eventually(t, func() bool {
		return logs.FilterMessage("sidecar is serving again").Len() == 1
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, logs.FilterMessageSnippet("stopped answering health checks").Len(), "a lasting failure is reported once")
}
