// Package pluginname holds the one rule for the name of a plugin or a sink in the
// spancost sidecar, shared by the python processor and the python extension so
// that a name one accepts the other accepts too.
//
// The sidecar resolves a name only as a Python entry point of its group
// (spancost.plugins or spancost.sinks), never as module:attribute, so a name is
// what packaging recommends for an entry point: letters, digits, underscores,
// dots and hyphens, not starting with a dot or a hyphen.
package pluginname // import "github.com/spancost/spancost/collector/internal/pluginname"

import (
	"fmt"
	"regexp"
)

var valid = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// Check returns an error naming the problem unless name can name a plugin.
func Check(name string) error {
	if !valid.MatchString(name) {
		return fmt.Errorf("%q is not a plugin entry-point name", name)
	}
	return nil
}
