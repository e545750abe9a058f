package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import "syscall"

// sysProcAttr puts the sidecar in its own process group, so a terminal's
// Ctrl-C reaches only the collector, which then stops the sidecar in order;
// and asks the kernel to send SIGTERM to the sidecar if the collector dies
// without a shutdown.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
