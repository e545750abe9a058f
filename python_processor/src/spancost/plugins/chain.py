"""``spancost.chain``: several fast-form plugins in one python processor, one hop.

Every python processor costs a round trip to the sidecar: the batch encoded in
Go, decoded in Python, the changes applied in Go. Two processors (filter by
environment, then price) pay it twice; a chain pays it once::

    processors:
      python/spancost:
        extension: python
        plugin: spancost.chain
        config:
          steps:
            - plugin: spancost.environment
              config: {drop: [ci, staging]}
            - plugin: spancost.cost
              config: {prices: {aws_pricelist: {enabled: false}}}

Every step must answer in the fast form (`AnnotatingPlugin`). Each step
annotates the batch as it arrived, into the same `Changes`; the collector then
applies them together (attribute changes, then double columns, then drops). So
a step does not see what an earlier step changed: spans a step drops are still
annotated by the next (wasted work, never a wrong result: a dropped span leaves
nothing), and two steps must not set the same attribute (the built-in plugins
never do: ``spancost.cost`` owns ``cost.*``, ``spancost.environment`` sets only
the tags it is configured with). The events of all steps are counted together;
a later step counts the spans an earlier one dropped too (a ``ci`` span dropped
by ``spancost.environment`` is also counted ``priced`` by ``spancost.cost``).

A step's configuration error names its place, e.g.
``config.steps[1].config.prices.aws_pricelist.refresh: ...``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from spancost.config import join_index, join_key, parse
from spancost.errors import ConfigError, PluginError
from spancost.plugin import AnnotatingPlugin, Changes, Events, ExportTraceServiceRequest
from spancost.registry import load_plugin
from spancost.settings.chain import CHAIN_PLUGIN, ChainSettings, StepSettings

__all__ = ["CHAIN_PLUGIN", "ChainPlugin"]

logger = logging.getLogger(__name__)


class ChainPlugin(AnnotatingPlugin):
    """Runs its steps over each batch in one hop (see the module docstring)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        settings = parse(ChainSettings, config)
        self._steps: list[AnnotatingPlugin] = []
        try:
            for index, step in enumerate(settings.steps):
                self._steps.append(_step(step, join_index("steps", index)))
        except BaseException:
            self.close()
            raise
        owned = [step.ownership for step in self._steps if step.ownership is not None]
        if owned:
            ownership = owned[0]
            for other in owned[1:]:
                ownership = ownership.merged(other)
            self.ownership = ownership
        logger.info("spancost.chain: %s", " -> ".join(type(step).__name__ for step in self._steps))

    def annotate(self, batch: ExportTraceServiceRequest, changes: Changes, events: Events) -> None:
        for step in self._steps:
            step.annotate(batch, changes, events)

    def annotate_wire(
        self, data: bytes, batch: ExportTraceServiceRequest, changes: Changes, events: Events
    ) -> None:
        for step in self._steps:
            step.annotate_wire(data, batch, changes, events)

    def close(self) -> None:
        for step in reversed(self._steps):
            try:
                step.close()
            except Exception:
                logger.exception("spancost.chain: closing %s failed", type(step).__name__)
        self._steps = []


def _step(step: StepSettings, path: str) -> AnnotatingPlugin:
    """The step's plugin, configured; errors name the step (``steps[1].config.drop``)."""
    plugin_key = join_key(path, "plugin")
    try:
        spec = load_plugin(step.plugin)
    except PluginError as exc:
        raise ConfigError(plugin_key, str(exc)) from None
    if not issubclass(spec.factory, AnnotatingPlugin):
        raise ConfigError(
            plugin_key,
            f"{step.plugin!r} answers with the whole batch; a chain combines only plugins that"
            " answer in the fast form (AnnotatingPlugin): use a processor of its own",
        )
    try:
        return spec.factory(step.config)
    except ConfigError as exc:
        inner = join_key(path, "config")
        raise ConfigError(f"{inner}.{exc.key}" if exc.key else inner, exc.message) from None
