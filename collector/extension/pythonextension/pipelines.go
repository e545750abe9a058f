package pythonextension // import "github.com/spancost/spancost/collector/extension/pythonextension"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/extension/extensioncapabilities"

	"github.com/spancost/spancost/collector/internal/wirepb"
	"github.com/spancost/spancost/collector/sidecarapi"
)

// The collector hands the extension its whole configuration before any
// pipeline starts (extensioncapabilities.ConfigSnapshotWatcher). The
// extension configures the python processors that name it, learns what each
// plugin owns, and refuses to start the collector when a sender's value could
// reach a sink as a fact (a client's cost.usd booked as money):
//
//   - every pipeline that exports to a sink runs, on all data that reaches the
//     sink, a python processor whose plugin owns each attribute the sink books
//     (ConfigureResponse.needs_owner), directly or in every pipeline feeding it
//     through connectors;
//   - a plugin that keeps prices an upstream collector wrote (Ownership
//     trusted_key, spancost.cost's trust_upstream) runs only on pipelines whose
//     every receiver authenticates its senders (an otlp receiver with an auth
//     extension on each protocol), so only a spancost agent holding the
//     credentials can hand it a price.
var _ extensioncapabilities.ConfigSnapshotWatcher = (*pythonExtension)(nil)

// sinkHeader is the gRPC header an exporter names its sink with.
const sinkHeader = "spancost-sink"

// NotifyConfigSnapshot checks the pipelines as described above.
func (e *pythonExtension) NotifyConfigSnapshot(ctx context.Context, snapshot extensioncapabilities.ConfigSnapshot) error {
	if snapshot == nil || snapshot.Effective() == nil {
		return nil
	}
	g, err := readGraph(snapshot.Effective())
	if err != nil {
		return err
	}
	owned := map[string]*wirepb.Ownership{}
	for _, id := range g.processorsOf(e.set.ID) {
		p := g.python[id]
		key := regKey{kind: wirepb.Kind_KIND_PROCESSOR, instance: id}
		c, err := e.register(ctx, key, registration{plugin: p.Plugin, configJSON: p.configJSON})
		if err != nil {
			// As the processor would say it when it starts.
			switch {
			case errors.Is(err, sidecarapi.ErrPluginNotFound):
				return fmt.Errorf("processors::%s::plugin: %q: %w", id, p.Plugin, err)
			case errors.Is(err, sidecarapi.ErrPluginConfig):
				return fmt.Errorf("processors::%s::config: plugin %q rejected its configuration: %w", id, p.Plugin, err)
			default:
				return fmt.Errorf("processors::%s: plugin %q: %w", id, p.Plugin, err)
			}
		}
		owned[id] = c.ownership
	}
	return errors.Join(e.checkSinks(g, owned), g.checkTrust(owned))
}

// checkSinks: every sink gets its booked attributes only from their owner.
func (e *pythonExtension) checkSinks(g *graph, owned map[string]*wirepb.Ownership) error {
	ep, err := parseEndpoint(e.cfg.Endpoint)
	if e.cfg.Endpoint == "" || err != nil {
		return nil // no sinks (Validate requires the endpoint for them)
	}
	var errs []error
	guaranteed := map[string][]string{}
	for _, pipeline := range g.pipelineIDs() {
		for _, exporter := range g.pipelines[pipeline].Exporters {
			for _, sink := range g.sinksFedBy(exporter, ep, e.cfg.sinkNames()) {
				e.mu.Lock()
				needs := e.registrations[regKey{kind: wirepb.Kind_KIND_SINK, instance: sink}].needs
				e.mu.Unlock()
				have := g.guaranteed(pipeline, owned, guaranteed, map[string]bool{})
				for _, key := range needs {
					if !slices.Contains(have, key) {
						errs = append(errs, fmt.Errorf(
							"service::pipelines::%s: exporter %q feeds the sink %q, which books %s, but no python processor "+
								"on the pipeline owns %s: a sender's value would be booked as a fact; add the processor whose "+
								"plugin sets it (e.g. a python processor running spancost.cost) to service::pipelines::%s::processors",
							pipeline, exporter, sink, key, key, pipeline))
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// checkTrust: prices from upstream are kept only from authenticated senders.
func (g *graph) checkTrust(owned map[string]*wirepb.Ownership) error {
	var errs []error
	for _, pipeline := range g.pipelineIDs() {
		for _, processor := range g.pipelines[pipeline].Processors {
			o, ok := owned[processor]
			if !ok || o.GetTrustedKey() == "" {
				continue
			}
			if open := g.unauthenticated(pipeline, map[string]bool{}); open != "" {
				errs = append(errs, fmt.Errorf(
					"processors::%s: its plugin keeps the %s an upstream collector set (trust_upstream), but on "+
						"service::pipelines::%s the receiver %q does not authenticate its senders, so any sender could "+
						"set it; configure an auth extension on every protocol of the pipeline's receivers "+
						"(e.g. bearertokenauth) or turn trust_upstream off",
					processor, o.GetTrustedKey(), pipeline, open))
			}
		}
	}
	return errors.Join(errs...)
}

// graph is what the checks read of the collector's configuration.
type graph struct {
	pipelines  map[string]pipelineConfig
	receivers  map[string]any
	exporters  map[string]any
	connectors map[string]bool
	python     map[string]pythonProcessor
}

type pipelineConfig struct {
	Receivers  []string `mapstructure:"receivers"`
	Processors []string `mapstructure:"processors"`
	Exporters  []string `mapstructure:"exporters"`
}

// pythonProcessor is what the extension reads of a python processor's
// configuration; the processor sends the same plugin and JSON when it starts.
type pythonProcessor struct {
	Extension  component.ID   `mapstructure:"extension"`
	Plugin     string         `mapstructure:"plugin"`
	Config     map[string]any `mapstructure:"config"`
	configJSON string
}

var pythonType = component.MustNewType("python")

func readGraph(conf *confmap.Conf) (*graph, error) {
	g := &graph{
		pipelines:  map[string]pipelineConfig{},
		receivers:  mapOf(conf.Get("receivers")),
		exporters:  mapOf(conf.Get("exporters")),
		connectors: map[string]bool{},
		python:     map[string]pythonProcessor{},
	}
	for id := range mapOf(conf.Get("connectors")) {
		g.connectors[id] = true
	}
	pipelines, err := conf.Sub("service::pipelines")
	if err != nil {
		return nil, fmt.Errorf("service::pipelines: %w", err)
	}
	if err := pipelines.Unmarshal(&g.pipelines, confmap.WithIgnoreUnused()); err != nil {
		return nil, fmt.Errorf("service::pipelines: %w", err)
	}
	for name := range mapOf(conf.Get("processors")) {
		var id component.ID
		if err := id.UnmarshalText([]byte(name)); err != nil || id.Type() != pythonType {
			continue
		}
		p := pythonProcessor{Extension: component.NewID(pythonType)}
		sub, err := conf.Sub("processors::" + name)
		if err != nil {
			return nil, fmt.Errorf("processors::%s: %w", name, err)
		}
		if err := sub.Unmarshal(&p, confmap.WithIgnoreUnused()); err != nil {
			return nil, fmt.Errorf("processors::%s: %w", name, err)
		}
		p.configJSON = "{}"
		if p.Config != nil {
			b, err := json.Marshal(p.Config)
			if err != nil {
				return nil, fmt.Errorf("processors::%s::config: %w", name, err)
			}
			p.configJSON = string(b)
		}
		g.python[name] = p
	}
	return g, nil
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func (g *graph) pipelineIDs() []string {
	ids := make([]string, 0, len(g.pipelines))
	for id := range g.pipelines {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// processorsOf are the python processors that name the extension ext and run
// on some pipeline, sorted.
func (g *graph) processorsOf(ext component.ID) []string {
	var ids []string
	for _, pipeline := range g.pipelines {
		for _, id := range pipeline.Processors {
			if p, ok := g.python[id]; ok && p.Extension == ext && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// sinksFedBy are the sinks the exporter sends to: an OTLP/gRPC exporter with
// the spancost-sink header, or pointed at the sidecar's endpoint (without the
// header: the only sink, or, with several, every one).
func (g *graph) sinksFedBy(exporter string, ep endpoint, sinks []string) []string {
	var id component.ID
	if err := id.UnmarshalText([]byte(exporter)); err != nil {
		return nil
	}
	if t := id.Type().String(); t != "otlp" && t != "otlp_grpc" {
		return nil
	}
	cfg := mapOf(g.exporters[exporter])
	for name, value := range mapOf(cfg["headers"]) {
		if strings.EqualFold(name, sinkHeader) {
			if sink, ok := value.(string); ok && slices.Contains(sinks, sink) {
				return []string{sink}
			}
			return nil // a sink the sidecar does not have: it answers UNAVAILABLE
		}
	}
	target, _ := cfg["endpoint"].(string)
	if target == "" || !sameEndpoint(target, ep) {
		return nil
	}
	return sinks
}

// sameEndpoint: an exporter's endpoint names the sidecar's.
func sameEndpoint(target string, ep endpoint) bool {
	if ep.socketPath != "" {
		path, ok := strings.CutPrefix(target, "unix:")
		return ok && filepath.Clean("/"+strings.TrimLeft(path, "/")) == ep.socketPath
	}
	return strings.TrimPrefix(strings.TrimPrefix(target, "dns:///"), "passthrough:///") == ep.hostPort
}

// guaranteed are the attributes owned by a processor on all the data that
// leaves pipeline: its own processors' and what every one of its inputs
// guarantees (a receiver nothing, a connector what all pipelines feeding it do).
func (g *graph) guaranteed(pipeline string, owned map[string]*wirepb.Ownership, memo map[string][]string, visiting map[string]bool) []string {
	if keys, ok := memo[pipeline]; ok {
		return keys
	}
	if visiting[pipeline] {
		return nil // a cycle guarantees nothing by itself
	}
	visiting[pipeline] = true
	defer delete(visiting, pipeline)
	var keys []string
	for _, processor := range g.pipelines[pipeline].Processors {
		if o, ok := owned[processor]; ok {
			keys = append(keys, o.GetKeys()...)
		}
	}
	var common []string
	for i, receiver := range g.pipelines[pipeline].Receivers {
		var in []string
		if g.connectors[receiver] {
			in = g.throughConnector(receiver, owned, memo, visiting)
		}
		if i == 0 {
			common = in
		} else {
			common = slices.DeleteFunc(common, func(k string) bool { return !slices.Contains(in, k) })
		}
	}
	keys = append(keys, common...)
	memo[pipeline] = keys
	return keys
}

func (g *graph) throughConnector(connector string, owned map[string]*wirepb.Ownership, memo map[string][]string, visiting map[string]bool) []string {
	var common []string
	first := true
	for _, upstream := range g.pipelineIDs() {
		if !slices.Contains(g.pipelines[upstream].Exporters, connector) {
			continue
		}
		in := g.guaranteed(upstream, owned, memo, visiting)
		if first {
			common, first = slices.Clone(in), false
		} else {
			common = slices.DeleteFunc(common, func(k string) bool { return !slices.Contains(in, k) })
		}
	}
	return common
}

// unauthenticated is a receiver through which unauthenticated senders reach
// pipeline ("" when there is none), looking through connectors.
func (g *graph) unauthenticated(pipeline string, visiting map[string]bool) string {
	if visiting[pipeline] {
		return ""
	}
	visiting[pipeline] = true
	for _, receiver := range g.pipelines[pipeline].Receivers {
		if !g.connectors[receiver] {
			if !authenticates(receiver, mapOf(g.receivers[receiver])) {
				return receiver
			}
			continue
		}
		for _, upstream := range g.pipelineIDs() {
			if slices.Contains(g.pipelines[upstream].Exporters, receiver) {
				if open := g.unauthenticated(upstream, visiting); open != "" {
					return open
				}
			}
		}
	}
	return ""
}

// authenticates: an otlp receiver with an authenticator on every protocol it
// serves. Other receivers are not taken as authenticating.
func authenticates(receiver string, cfg map[string]any) bool {
	var id component.ID
	if err := id.UnmarshalText([]byte(receiver)); err != nil || id.Type().String() != "otlp" {
		return false
	}
	served := 0
	for _, protocol := range mapOf(cfg["protocols"]) {
		if protocol == nil {
			continue // not served (the effective configuration lists it as null)
		}
		served++
		auth := mapOf(mapOf(protocol)["auth"])
		if name, _ := auth["authenticator"].(string); name == "" {
			return false
		}
	}
	return served > 0
}
