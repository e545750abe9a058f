// Package pythonextension owns the spancost Python sidecar: it spawns the
// process (or connects to one running beside the collector), checks its
// health, restarts it when it dies and stops it on shutdown. Other components
// reach the sidecar through the sidecarapi.Sidecar interface, which it implements.
//
//go:generate mdatagen metadata.yaml
package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"
