package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spancost/spancost/collector/extension/pythonextension/internal/metadata"
)

// healthPollInterval is how often a starting sidecar is asked whether it serves.
const healthPollInterval = 25 * time.Millisecond

// outputLines is how many lines of a sidecar's output are kept to explain a
// failed start.
const outputLines = 20

// supervisor runs the sidecar process: it starts it, restarts it with backoff
// when it dies or stops answering health checks, and stops it gracefully.
type supervisor struct {
	cfg       *Config
	ep        endpoint
	logger    *zap.Logger
	check     func(context.Context) error
	replay    func(context.Context) error
	telemetry *metadata.TelemetryBuilder
	// restartAttrs names the extension on the restart metric.
	restartAttrs metric.MeasurementOption

	stopCh  chan struct{}
	watchWG sync.WaitGroup

	mu   sync.Mutex
	proc *process
}

// process is one run of the sidecar.
type process struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	waitErr error
	output  *tail
	started time.Time
}

func newSupervisor(cfg *Config, ep endpoint, set extension.Settings, check, replay func(context.Context) error, tb *metadata.TelemetryBuilder) *supervisor {
	return &supervisor{
		cfg: cfg, ep: ep, logger: set.Logger, check: check, replay: replay, telemetry: tb,
		restartAttrs: metric.WithAttributeSet(attribute.NewSet(attribute.String("extension", set.ID.String()))),
		stopCh:       make(chan struct{}),
	}
}

func (s *supervisor) start(ctx context.Context) error {
	p, err := s.spawn()
	if err != nil {
		return err
	}
	if err := s.awaitServing(ctx, p); err != nil {
		s.kill(p)
		return err
	}
	s.watchWG.Add(1)
	go s.watch(p)
	return nil
}

// awaitServing waits until p answers health checks, p exits, or startup_timeout passes.
func (s *supervisor) awaitServing(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartupTimeout)
	defer cancel()
	check := s.check
	if s.ep.socketPath != "" {
		// Dialing a socket that does not exist yet only fills the log with
		// gRPC connection warnings; wait for the sidecar to create it.
		check = func(ctx context.Context) error {
			if _, err := os.Stat(s.ep.socketPath); err != nil {
				return err
			}
			return s.check(ctx)
		}
	}
	if err := waitHealthy(ctx, check, p.done); err != nil {
		select {
		case <-p.done:
			return fmt.Errorf("sidecar %q exited during start-up (%v); its last output:\n%s", s.cfg.Command[0], p.waitErr, p.output)
		default:
		}
		return fmt.Errorf("sidecar %q did not become healthy within startup_timeout %s (%w); its last output:\n%s",
			s.cfg.Command[0], s.cfg.StartupTimeout, err, p.output)
	}
	return nil
}

// waitHealthy polls check until it succeeds, ctx ends, or exited is closed.
// It returns the error of the last check that was not cut short by ctx, which
// says why the sidecar is not serving (NOT_SERVING, connection refused, ...).
func waitHealthy(ctx context.Context, check func(context.Context) error, exited <-chan struct{}) error {
	ticker := time.NewTicker(healthPollInterval)
	defer ticker.Stop()
	var last error
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		// A check cut short by the start-up deadline says nothing new.
		if last == nil || (ctx.Err() == nil && status.Code(err) != codes.DeadlineExceeded) {
			last = err
		}
		select {
		case <-ctx.Done():
			return last
		case <-exited:
			return errors.New("process exited")
		case <-ticker.C:
		}
	}
}

func (s *supervisor) spawn() (*process, error) {
	if s.ep.socketPath != "" {
		// A socket left by a sidecar that was killed would make bind fail.
		if err := os.Remove(s.ep.socketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("removing stale socket %q: %w", s.ep.socketPath, err)
		}
	}
	cmd := exec.Command(s.cfg.Command[0], s.cfg.Command[1:]...) //nolint:gosec // the command is the operator's configuration
	cmd.Dir = s.cfg.WorkingDir
	cmd.Env = os.Environ()
	for k, v := range s.cfg.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// Last, so that neither the collector's environment nor env can move the
	// sidecar away from the endpoint the extension dials.
	cmd.Env = append(cmd.Env, envListen+"="+s.ep.String())
	cmd.SysProcAttr = sysProcAttr()
	p := &process{cmd: cmd, done: make(chan struct{}), output: newTail(outputLines)}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("command: starting sidecar %q: %w", s.cfg.Command[0], err)
	}
	p.started = time.Now()
	logger := s.logger.With(zap.Int("sidecar_pid", cmd.Process.Pid))
	var pipes sync.WaitGroup
	pipes.Add(2)
	go p.output.copyLines(&pipes, stdout, logger)
	go p.output.copyLines(&pipes, stderr, logger)
	go func() {
		pipes.Wait() // Wait must not run before the pipes are drained
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	logger.Info("sidecar started", zap.Strings("command", s.cfg.Command), zap.Stringer("endpoint", s.ep))
	return p, nil
}

// watch keeps the sidecar alive until stop is called.
func (s *supervisor) watch(p *process) {
	defer s.watchWG.Done()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = s.cfg.Restart.InitialInterval
	b.MaxInterval = s.cfg.Restart.MaxInterval
	b.Multiplier = s.cfg.Restart.Multiplier
	b.RandomizationFactor = s.cfg.Restart.RandomizationFactor
	for {
		if !s.superviseRun(p) {
			return
		}
		if !s.cfg.Restart.Enabled {
			s.logger.Error("the sidecar is gone and restart is not enabled: spans pass without it")
			return
		}
		// A sidecar that served for a while before it died starts the
		// backoff afresh; one that crashes at once waits longer each time.
		if time.Since(p.started) > 2*s.cfg.Restart.MaxInterval {
			b.Reset()
		}
		failingSince := time.Now()
		for {
			select {
			case <-s.stopCh:
				return
			case <-time.After(b.NextBackOff()):
			}
			next, err := s.restart()
			if err == nil {
				p = next
				break
			}
			if limit := s.cfg.Restart.MaxElapsedTime; limit > 0 && time.Since(failingSince) >= limit {
				s.logger.Error("restarting the sidecar failed for restart.max_elapsed_time; giving up: spans pass without it",
					zap.Duration("max_elapsed_time", limit), zap.Error(err))
				return
			}
			s.logger.Error("restarting the sidecar failed; trying again", zap.Error(err))
		}
	}
}

// superviseRun health-checks p until it exits (true) or stop is called (false).
func (s *supervisor) superviseRun(p *process) bool {
	ticker := time.NewTicker(s.cfg.HealthCheck.Interval)
	defer ticker.Stop()
	failures := 0
	for {
		select {
		case <-s.stopCh:
			return false
		case <-p.done:
			s.logger.Error("sidecar exited; restarting it", zap.Int("sidecar_pid", p.cmd.Process.Pid), zap.NamedError("exit", p.waitErr))
			return true
		case <-ticker.C:
		}
		err := s.check(context.Background())
		if err == nil {
			failures = 0
			continue
		}
		failures++
		if failures >= s.cfg.HealthCheck.FailureThreshold {
			s.logger.Error("sidecar failed its health checks; killing and restarting it",
				zap.Int("sidecar_pid", p.cmd.Process.Pid), zap.Int("failures", failures), zap.Error(err))
			s.kill(p)
			failures = 0
		}
	}
}

func (s *supervisor) restart() (*process, error) {
	s.telemetry.ExtensionPythonSidecarRestarts.Add(context.Background(), 1, s.restartAttrs)
	p, err := s.spawn()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := s.awaitServing(ctx, p); err != nil {
		s.kill(p)
		return nil, err
	}
	if err := s.replay(ctx); err != nil {
		// The plugins were accepted at start-up; refusing them now is a
		// sidecar problem that restarting again will not fix. Keep serving:
		// processors fail over to on_error and retry the configuration.
		s.logger.Error("the restarted sidecar rejected a plugin configuration it accepted before", zap.Error(err))
	}
	s.logger.Info("sidecar restarted and configured", zap.Int("sidecar_pid", p.cmd.Process.Pid))
	return p, nil
}

func (s *supervisor) kill(p *process) {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop asks the sidecar to finish in-flight batches (SIGTERM) and kills it
// after shutdown_grace_period.
func (s *supervisor) stop(ctx context.Context) error {
	close(s.stopCh)
	s.watchWG.Wait()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	grace := time.NewTimer(s.cfg.ShutdownGracePeriod)
	defer grace.Stop()
	select {
	case <-p.done:
		if p.waitErr != nil {
			return fmt.Errorf("sidecar exited uncleanly after SIGTERM: %w", p.waitErr)
		}
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	s.logger.Warn("sidecar did not stop within shutdown_grace_period; killing it", zap.Duration("shutdown_grace_period", s.cfg.ShutdownGracePeriod))
	s.kill(p)
	return nil
}

// tail forwards a process's output lines to the log and keeps the last few.
type tail struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func newTail(n int) *tail { return &tail{max: n} }

func (t *tail) copyLines(wg *sync.WaitGroup, r io.Reader, logger *zap.Logger) {
	defer wg.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		logger.Info(line)
		t.mu.Lock()
		t.lines = append(t.lines, line)
		if len(t.lines) > t.max {
			t.lines = t.lines[1:]
		}
		t.mu.Unlock()
	}
	// Keep draining so the process never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return "(no output)"
	}
	return strings.Join(t.lines, "\n")
}
