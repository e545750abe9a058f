"""The guard as a loop (``spancost guard`` without ``--once``): a run per interval, over a
budgets file that may change underneath (a ConfigMap that someone edits).

Before each run the file is read again (`BudgetsFile.reload`). A changed, valid file
takes effect for that run, its webhooks and currency table included. A changed, bad
file is reported once (an error log line, a failure alert, an Event on the guard's own
Pod) and the last good budgets stay in force: the loop never exits for it, because a
guard that stops leaves every Deployment it holds scaled down.

When a change drops namespaces, the loop remembers them (`retired`) and the runs look
there too for the Deployments the guard still holds, until a run has succeeded: so a
budget removed from the file gives back what it held even where the new file names
no namespace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from spancost.errors import ConfigError
from spancost.guard.alerts import AlertSender
from spancost.guard.budgets import BudgetsFile, GuardConfig
from spancost.guard.policy import failure_alert, format_time
from spancost.guard.run import RunReport

__all__ = ["GuardLoop", "Run"]

logger = logging.getLogger(__name__)

Run = Callable[[GuardConfig, AlertSender, Collection[str]], RunReport]
"""One run with these budgets, this alert sender and these retired namespaces."""


class GuardLoop:
    """What the loop keeps from one run to the next: the budgets in force, the alert
    sender and currency table made from them, and the retired namespaces."""

    def __init__(
        self,
        budgets: BudgetsFile,
        run: Run,
        report_error: Callable[[str], None],
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`report_error(message)`: tell the cluster about a bad budgets file (an Event)."""
        self._budgets = budgets
        self._run = run
        self._report_error = report_error
        self._now = now
        self.config = budgets.config
        self._loaded_at = now()
        self._sender = AlertSender(self.config.webhooks)
        self.retired: set[str] = set()
        self.config.fx.refresh_now()
        self.config.fx.start()

    def run_once(self) -> RunReport:
        """Re-read the budgets file if it changed, then one run."""
        self._reload()
        report = self._run(self.config, self._sender, frozenset(self.retired))
        if report.ok:
            self.retired.clear()
        return report

    def close(self) -> None:
        self.config.fx.close()
        self._sender.close()

    def _reload(self) -> None:
        old = self.config
        try:
            new = self._budgets.reload()
        except ConfigError as exc:
            self._refuse(exc)
            return
        if new is None:
            return
        new.fx.refresh_now()
        new.fx.start()
        old.fx.close()
        self._sender.close()
        self._sender = AlertSender(new.webhooks)
        self.config, self._loaded_at = new, self._now()
        self.retired = (self.retired | set(old.namespaces)) - set(new.namespaces)
        logger.info(
            "budgets file %s changed: %d budget(s) (%s) now in force%s",
            self._budgets.path,
            len(new.budgets),
            ", ".join(budget.domain for budget in new.budgets),
            f"; also looking in {', '.join(sorted(self.retired))}, no longer named"
            if self.retired
            else "",
        )

    def _refuse(self, error: ConfigError) -> None:
        kept = (
            f"keeping the budgets read at {format_time(self._loaded_at)} "
            f"({', '.join(budget.domain for budget in self.config.budgets)})"
        )
        logger.error(
            "budgets file %s changed and is invalid: %s; %s", self._budgets.path, error, kept
        )
        message = f"the budgets file {self._budgets.path} changed and is invalid: {error}; {kept}"
        self._report_error(message)
        alert = failure_alert(
            f"the budgets file changed and is invalid; {kept}", str(error), dedup="budgets"
        )
        self._sender.send([alert], self._now())
