"""The last hour of the daemon's sync lag, queue depth and poll outcomes, sampled from its own
metrics for the health page's plots."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from sync.runtime import metrics

log = structlog.get_logger("escalation_sync.console")


@dataclass(frozen=True, slots=True)
class Sample:
    """The daemon at one moment: mean lag per system since the sample before, queue depth."""

    at: datetime
    lag: dict[str, float | None]
    queue_depth: int
    polls: dict[str, tuple[float, float]]


class LagHistory:
    """Samples of the daemon's sync lag, queue depth and poll outcomes, kept for an hour.

    The lag histogram counts every change written since start; the mean lag of an interval is
    the growth of its sum over the growth of its count between two samples.
    """

    def __init__(
        self,
        queue_depth: Callable[[], int] | None = None,
        *,
        every: float = 30.0,
        keep: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.every = every
        self._queue_depth = queue_depth
        self._clock = clock
        self._samples: deque[Sample] = deque(maxlen=max(2, int(keep.total_seconds() // every) + 1))
        self._last: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.since: datetime | None = None

    def sample(self) -> Sample:
        """Take one sample now."""
        totals = _lag_totals()
        lag: dict[str, float | None] = {}
        with self._lock:
            for system, (total, count) in totals.items():
                before_total, before_count = self._last.get(system, (0.0, 0.0))
                grown = count - before_count
                lag[system] = (total - before_total) / grown if grown > 0 else None
            self._last = totals
            taken = Sample(self._clock(), lag, self._depth(), _poll_counts())
            if self.since is None:
                self.since = taken.at
            self._samples.append(taken)
        return taken

    def _depth(self) -> int:
        if self._queue_depth is None:
            return 0
        try:
            return int(self._queue_depth())
        except Exception:  # a queue that cannot say is drawn as empty, never a lost sample
            return 0

    def samples(self) -> tuple[Sample, ...]:
        """The samples kept, oldest first."""
        with self._lock:
            return tuple(self._samples)

    def start(self) -> None:
        """Sample in a background thread until `stop()`."""
        self.sample()
        self._thread = threading.Thread(target=self._run, name="console-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the sampling thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sample()
            except Exception as exc:  # a sample lost is a gap in the plot, never a dead console
                log.warning("console sample lost", error=type(exc).__name__)


def _lag_totals() -> dict[str, tuple[float, float]]:
    """Per system, (sum, count) of the sync lag histogram since start."""
    totals: dict[str, list[float]] = {}
    for family in metrics.SYNC_LAG.collect():
        for sample in family.samples:
            slot = totals.setdefault(sample.labels.get("system", ""), [0.0, 0.0])
            if sample.name.endswith("_sum"):
                slot[0] = float(sample.value)
            elif sample.name.endswith("_count"):
                slot[1] = float(sample.value)
    return {k: (v[0], v[1]) for k, v in totals.items()}


def _poll_counts() -> dict[str, tuple[float, float]]:
    """Per system, (polls that succeeded, polls that failed) since start."""
    counts: dict[str, list[float]] = {}
    for family in metrics.POLLS.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            slot = counts.setdefault(sample.labels.get("system", ""), [0.0, 0.0])
            slot[0 if sample.labels.get("outcome") == "ok" else 1] += float(sample.value)
    return {k: (v[0], v[1]) for k, v in counts.items()}


def poll_outcomes(
    system: str, samples: Sequence[Sample]
) -> tuple[datetime | None, datetime | None]:
    """When polls of `system` last succeeded and last failed, as far as the samples tell."""
    last_ok = last_failed = None
    previous: tuple[float, float] | None = None
    for sample in samples:
        now = sample.polls.get(system)
        if now is None:
            continue
        if previous is not None:
            if now[0] > previous[0]:
                last_ok = sample.at
            if now[1] > previous[1]:
                last_failed = sample.at
        previous = now
    return last_ok, last_failed
