"""The demo's run history: what a user sees after leaving Airflow running for a day, made at
start-up so that ``apportion compare`` and MLflow's compare view have material at once.

With the DAGs' schedules on, unpausing a DAG makes the scheduler create its latest interval's
run at once (``catchup=False``: that one only; run type ``scheduled``). The demo adds one
manual run of each DAG (what the Trigger button does) and backfills ``traffic_prediction``
(run type ``backfill``) at a few logical dates spread over the past day, so its runs plan for
night, rush hours and midday. Each workflow run warm-starts from the front the DAG's previous
run published; the backfill's runs therefore wait until no other run of the DAG is active, and
only the DAG's first run ever starts cold. ``medical_diagnosis`` also gets two manual runs that
enact one case each, the second planned with the calibration the first one's steps updated.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping

from apportion.stack.airflow_client import FINISHED_STATES, AirflowClient, ApiError, Unreachable, run_seconds
from apportion.stack.errors import DemoError

BACKFILL_DAG = "traffic_prediction"
BACKFILL_SPAN = timedelta(hours=24)
BACKFILL_RUNS = 6
TIMETABLE_STEP = timedelta(minutes=15)  # traffic_prediction's schedule, */15 * * * *
# Two consecutive enacted runs of one case (seven steps each): the second plans with what the
# first one's steps taught the calibration (docs/calibration.md), so the error falls.
ENACTED_DAG = "medical_diagnosis"
ENACTED_RUNS = 2
ENACT_CONF = {"cases": 1, "enact": "plan and run", "enact_units": 1}
# The scheduler creates a DAG's run for the latest interval within seconds of the unpause;
# after this long the demo stops waiting for one (a slow DAG processor, a full machine).
SCHEDULED_RUN_WAIT = 180.0
ACTIVE_STATES = ("queued", "running")

RunKey = tuple[str, str]  # (dag_id, dag_run_id)


def backfill_dates(now: datetime, count: int, span: timedelta = BACKFILL_SPAN,
                   step: timedelta = TIMETABLE_STEP) -> list[datetime]:
    """``count`` logical dates of the timetable spread evenly over the ``span`` before ``now``,
    oldest first; the latest interval, which the scheduler runs itself, is not among them."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    latest = epoch + (now - epoch) // step * step
    return [epoch + (latest - span + index * (span / count) - epoch) // step * step for index in range(count)]


def run_label(run: Mapping[str, Any]) -> str:
    """``<run type> <logical date, else the time it ran after>`` in UTC to the minute."""
    when = (run.get("logical_date") or run.get("run_after") or "")[:16].replace("T", " ")
    return f"{run.get('run_type', '?')} {when}".strip()


class History:
    """Unpauses the DAGs, triggers one manual run each and backfills ``BACKFILL_DAG`` at
    ``dates``; ``poll`` follows every run of the DAGs created meanwhile until all are done."""

    def __init__(self, client: AirflowClient, dag_ids: Iterable[str], conf: Mapping[str, Any] | None,
                 dates: Iterable[datetime], say: Callable[[str], None]) -> None:
        self.client = client
        self.dag_ids = list(dag_ids)
        self.conf = dict(conf or {})
        self.dates = list(dates) if BACKFILL_DAG in self.dag_ids else []
        self.say = say
        self.before: set[RunKey] = set()
        self.runs: dict[RunKey, dict] = {}  # this session's runs, their last API record
        self.scheduled: set[str] = set()  # DAGs with a scheduled run (this session or earlier)
        self.open_backfill: int | None = None  # the last backfill made, until the next one
        self.started = time.monotonic()

    def start(self) -> None:
        """Note the runs already there (a reused state dir), unpause each DAG and trigger it."""
        for dag_id in self.dag_ids:
            existing = self.client.dag_runs(dag_id)
            self.before.update((dag_id, run["dag_run_id"]) for run in existing)
            self.scheduled.update(dag_id for run in existing if run["run_type"] == "scheduled")
        for dag_id in self.dag_ids:
            self.client.unpause(dag_id)
            run_id = self.client.trigger(dag_id, self.conf)
            self.say(f"{dag_id}: unpaused (the scheduler adds its latest interval's run) and triggered {run_id}")
        if ENACTED_DAG in self.dag_ids:
            for _ in range(ENACTED_RUNS):  # max_active_runs 1: one after the other
                run_id = self.client.trigger(ENACTED_DAG, {**self.conf, **ENACT_CONF})
                self.say(f"{ENACTED_DAG}: triggered {run_id}, enacting one case (planned with the calibration so far)")
        if self.dates:
            self.say(f"{BACKFILL_DAG}: backfilling {len(self.dates)} runs over the past "
                     f"{BACKFILL_SPAN.total_seconds() / 3600:.0f} h, one after the other: "
                     + ", ".join(date.strftime("%H:%M") for date in self.dates) + " UTC")

    def poll(self) -> bool:
        """One round: start the next backfill when its DAG is idle, note the runs' states.
        True once every backfill is made, each DAG has had its scheduled run (or
        ``SCHEDULED_RUN_WAIT`` passed) and no run of the DAGs is queued or running."""
        try:
            self._fetch()
            if self.dates and not self._active(BACKFILL_DAG):
                self._next_backfill()
                return False
        except Unreachable:  # a busy API server: next round
            return False
        if not self._scheduled_done():
            return False
        return not self.dates and not any(self._active(dag_id) for dag_id in self.dag_ids)

    def _fetch(self) -> None:
        for dag_id in self.dag_ids:
            for run in self.client.dag_runs(dag_id):
                key = (dag_id, run["dag_run_id"])
                if run["run_type"] == "scheduled":
                    self.scheduled.add(dag_id)
                if key in self.before:
                    continue
                last = self.runs.get(key)
                self.runs[key] = run
                if last is None or last["state"] != run["state"]:
                    self._report(dag_id, run)

    def _report(self, dag_id: str, run: Mapping[str, Any]) -> None:
        state = run["state"]
        if state in FINISHED_STATES:
            state += f" in {run_seconds(run) or 0:.1f} s"
        self.say(f"{dag_id} {run_label(run)}: {state}")

    def _active(self, dag_id: str) -> bool:
        return any(key[0] == dag_id and run["state"] in ACTIVE_STATES for key, run in self.runs.items())

    def _next_backfill(self) -> None:
        """Close the previous backfill (its run has ended: the DAG is idle) and backfill the next
        date. Should Airflow still refuse (409: one unfinished backfill per DAG), the next round
        tries again."""
        date = self.dates[0]
        if self.open_backfill is not None:
            self.client.close_backfill(self.open_backfill)
            self.open_backfill = None
        try:
            self.open_backfill = self.client.backfill(BACKFILL_DAG, date, date, self.conf)["id"]
        except ApiError as error:
            if error.status == 409:
                return
            self.say(f"{BACKFILL_DAG}: no backfill at {date:%Y-%m-%d %H:%M} UTC: {error.detail}")
        self.dates.pop(0)

    def _scheduled_done(self) -> bool:
        missing = [dag_id for dag_id in self.dag_ids if dag_id not in self.scheduled]
        if missing and time.monotonic() - self.started > SCHEDULED_RUN_WAIT:
            self.say(f"no scheduled run of {', '.join(missing)} after {SCHEDULED_RUN_WAIT:.0f} s; not waiting for one")
            self.scheduled.update(missing)
        return not missing

    def wait(self, timeout: float, poll: float = 2.0, on_round: Callable[[History], None] | None = None) -> list[dict]:
        """``poll`` until done; this session's runs, by DAG and then by logical date (or the
        time they ran after). ``DemoError`` after ``timeout`` seconds."""
        while not self.poll():
            if on_round is not None:
                on_round(self)
            if time.monotonic() - self.started > timeout:
                active = [f"{dag_id} {run_label(run)}" for (dag_id, _), run in self.runs.items()
                          if run["state"] in ACTIVE_STATES]
                raise DemoError(f"runs not finished after {timeout:.0f} s: {', '.join(active) or 'backfills pending'}")
            time.sleep(poll)
        order = {dag_id: index for index, dag_id in enumerate(self.dag_ids)}
        return sorted(self.runs.values(), key=lambda run: (order[run["dag_id"]],
                                                           run.get("logical_date") or run["run_after"]))

    def active_labels(self) -> list[str]:
        """The runs running now, for the memory monitor's phase."""
        return [f"{dag_id} {run['run_type']}" for (dag_id, _), run in self.runs.items() if run["state"] == "running"]
