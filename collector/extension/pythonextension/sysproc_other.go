//go:build !linux

package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import "syscall"

func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
