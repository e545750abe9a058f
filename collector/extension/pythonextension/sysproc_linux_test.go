package pythonextension

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A collector that dies without a shutdown (OOM kill, SIGKILL) must not leave
// its sidecar behind: the kernel sends the sidecar SIGTERM (Pdeathsig).
func TestSidecarStopsWhenCollectorDies(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	logPath := filepath.Join(t.TempDir(), "sidecar.log")
	collector := exec.Command(self)
	collector.Env = append(os.Environ(),
		envFakeMode+"=collector",
		envFakeLog+"="+logPath,
		"GORACE=atexit_sleep_ms=0",
		"TMPDIR="+t.TempDir(), // where the dead collector leaves its socket directory
	)
	require.NoError(t, collector.Start())
	t.Cleanup(func() {
		// Should the test fail, leave no process behind.
		_ = collector.Process.Kill()
		for _, line := range fakeLogLines(logPath, "start") {
			_ = syscall.Kill(pidOf(t, line), syscall.SIGKILL)
		}
	})
	require.Eventually(t, func() bool { return len(fakeLogLines(logPath, "ready")) == 1 }, 10*time.Second, 10*time.Millisecond)
	starts := fakeLogLines(logPath, "start")
	require.Len(t, starts, 1)
	sidecar := pidOf(t, starts[0])

	require.NoError(t, collector.Process.Signal(syscall.SIGKILL))
	_ = collector.Wait()

	require.Eventually(t, func() bool { return len(fakeLogLines(logPath, "sigterm")) == 1 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, fmt.Sprintf("%d sigterm", sidecar), fakeLogLines(logPath, "sigterm")[0])
}
