// Package pythonprocessor sends each batch of spans to a plugin in the
// spancost Python sidecar and forwards what the plugin returns. A sidecar
// that fails, hangs or answers nonsense never costs a span: with
// on_error: pass the batch goes on unchanged, with on_error: reject the
// sender gets a retryable error.
//
//go:generate mdatagen metadata.yaml
package pythonprocessor // import "github.com/spancost/spancost/collector/processor/pythonprocessor"
