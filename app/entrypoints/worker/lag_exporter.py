"""The worker's lag exporter: every LEDGER_LAG_INTERVAL_S, a daemon thread reads its group's lag and
the members of every role's groups from the cluster and sets the Prometheus gauges
(``ledger_consumer_lag_messages``, ``ledger_consumer_lag_seconds``, ``ledger_consumer_group_members``).

It runs beside Faust, not in its event loop: every call has a timeout, a failed measurement is
logged, counted (``ledger_consumer_lag_errors_total``) and leaves the gauges as they were, and the
thread never holds up the worker's stop.
"""
from __future__ import annotations

import logging
import threading
import time

from app import observability

log = logging.getLogger(__name__)


def members_by_role(described: dict, groups: dict[str, dict[str, str]]) -> dict[str, int]:
    """Per stage (decider, projector), the members of the groups that run it."""
    counts = {"decider": 0, "projector": 0}
    for group, topics in groups.items():
        state_members = described.get(group)
        n = len(state_members[1]) if state_members else 0
        for stage in set(topics.values()):
            counts[stage] = counts.get(stage, 0) + n
    return counts


class LagExporter:
    def __init__(self, lag, groups: dict[str, dict[str, str]], own_group: str, interval_s: float):
        self.lag = lag
        self.groups = groups
        self.own_group = own_group
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-exporter", daemon=True)
        self._last_error = 0.0

    def start(self) -> LagExporter:
        self._thread.start()
        return self

    def measure_once(self) -> None:
        described = self.lag.describe(list(self.groups))
        own = self.lag.group_lag(self.own_group, self.groups[self.own_group], described=described[self.own_group])
        observability.record_lag(own.partitions, members_by_role(described, self.groups))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.measure_once()
            except Exception as exc:  # noqa: BLE001 - a measurement never stops the worker
                observability.LAG_ERRORS.inc()
                now = time.monotonic()
                if now - self._last_error > 60:  # one line a minute while the cluster does not answer
                    self._last_error = now
                    log.warning("measuring the consumer lag failed: %s: %s", type(exc).__name__, exc)

    def stop(self) -> None:
        """Never holds up the worker's exit: a measurement in flight (bounded by its timeouts) is left
        to the daemon thread, and its clients to the process's end."""
        self._stop.set()
        self._thread.join(timeout=0.5)
        if not self._thread.is_alive():
            self.lag.close()
