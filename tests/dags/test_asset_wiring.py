"""One extract cycle triggers each alert domain once: proved with the scheduler's own code.

The DAG folder is synced into the metadata DB as the DAG processor would, the alert DAGs are
unpaused, and extract cycles are replayed as the events their tasks emit
(``AssetManager.register_asset_change``, what the execution API calls when a task's outlet
event lands). After each event the scheduler's run creation runs
(``SchedulerJobRunner._create_dagruns_for_dags``: ``DagModel.dags_needing_dagruns`` evaluates
each DAG's asset condition on its AssetDagRunQueue rows, then the runs are created and the
queue consumed). The test counts the asset-triggered runs per domain and cycle.
``cycle_event`` (what ``publish`` emits, or not) is tested as a pure function.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.dags.test_dag_integrity import DAGS
from threshold_operators.alerts.dag_factory import domain_sources
from threshold_operators.extract.dag_factory import cycle_event
from threshold_operators.extract.sources import load_sources

DOMAINS = ("sales", "inventory", "customer", "traffic", "finance", "compound")
SOURCES = ("shop_api", "ads_api", "reviews_api", "shop_exports")
T = datetime(2026, 10, 1, 4, 5, tzinfo=UTC)


def _result(advanced: bool, rows: int = 10) -> dict:
    return {"loaded": rows, "quarantined": 0, "high_water_mark": "2026-10-01T04:04:00+00:00", "advanced": advanced}


# --- what publish emits ---------------------------------------------------------------------
def test_a_cycle_that_landed_rows_is_published_with_what_advanced_and_what_failed():
    extra = cycle_event("shop_api", {"orders": _result(True, 70), "payments": _result(False, 0), "refunds": None},
                        run_id="r1", run_type="scheduled", cycle=T, last_cycle=None)
    assert extra["advanced"] == ["orders"] and extra["failed"] == ["refunds"]
    assert extra["tables"]["orders"] == {"rows": 70, "quarantined": 0, "high_water_mark": "2026-10-01T04:04:00+00:00"}
    assert "refunds" not in extra["tables"] and extra["cycle"] == extra["latest_cycle"] == T.isoformat()


def test_the_newest_cycle_is_published_even_when_nothing_advanced():
    """A quiet source must not hold back the domains waiting for all their sources."""
    extra = cycle_event("ads_api", {"traffic": _result(False, 0)}, run_id="r2", run_type="scheduled",
                        cycle=T, last_cycle=(T - timedelta(minutes=5)).isoformat())
    assert extra is not None and extra["advanced"] == [] and extra["latest_cycle"] == T.isoformat()
    failed = cycle_event("ads_api", {"traffic": None}, run_id="r3", run_type="manual", cycle=T, last_cycle=None)
    assert failed["failed"] == ["traffic"]  # a failed table does not stop the cycle's event


@pytest.mark.parametrize("run_type, cycle", [
    ("scheduled", T - timedelta(days=1)),  # a cleared run of an old interval
    ("scheduled", T),  # the same cycle again (publish retried after the event went out)
    ("backfill", T + timedelta(minutes=5)),  # a backfill is never the live cycle
])
def test_an_old_interval_or_a_backfill_that_landed_nothing_triggers_nothing(run_type, cycle):
    assert cycle_event("shop_api", {"orders": _result(False, 0)}, run_id="old", run_type=run_type, cycle=cycle,
                       last_cycle=T.isoformat()) is None


def test_rows_that_did_land_in_an_old_interval_are_published_without_moving_the_latest_cycle():
    extra = cycle_event("shop_api", {"orders": _result(True)}, run_id="old", run_type="scheduled",
                        cycle=T - timedelta(days=1), last_cycle=T.isoformat())
    assert extra["advanced"] == ["orders"] and extra["latest_cycle"] == T.isoformat()


def test_each_domain_waits_for_the_sources_of_its_fact_tables():
    specs = load_sources()[0]
    assert domain_sources({"shipments", "reviews", "shops"}, specs) == ["reviews_api", "shop_api"]
    assert domain_sources({"ad_spend", "traffic", "orders"}, specs) == ["ads_api", "shop_api", "shop_exports"]
    assert domain_sources({"products", "shops"}, specs) == []  # dimensions trigger nothing: the fallback only


# --- the scheduler: runs per cycle ------------------------------------------------------------
class Scheduler:
    """The metadata DB with the DAG folder synced, the alert DAGs unpaused, and the scheduler's
    run creation; ``emit`` registers an event as a task's outlet would."""

    def __init__(self):
        from airflow.jobs.job import Job
        from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

        self.runner = SchedulerJobRunner(job=Job(), executors=[])
        self.alert_dags = [f"storefence_alerts_{d}" for d in DOMAINS]

    def sync(self):
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session

        manager = DagBundlesManager()
        with create_session() as session:
            manager.sync_bundles_to_db(session=session)
        bundle = next(b for b in manager.get_all_dag_bundles() if b.name == "dags-folder")
        bundle.initialize()
        bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=bundle.path, bundle_name=bundle.name)
        assert not bag.import_errors, bag.import_errors
        sync_bag_to_db(bag, bundle.name, bundle.version)
        self.clear()
        with create_session() as session:
            for dm in session.query(DagModel).filter(DagModel.dag_id.in_(self.alert_dags)):
                dm.is_paused = False
                dm.next_dagrun_create_after = None  # the hourly fallback is not what is counted here

    def clear(self):
        from airflow.models.asset import AssetDagRunQueue
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            session.query(AssetDagRunQueue).filter(AssetDagRunQueue.target_dag_id.in_(self.alert_dags)).delete()
            session.query(DagRun).filter(DagRun.dag_id.in_(self.alert_dags)).delete()

    def close(self):
        from airflow.models.dag import DagModel
        from airflow.utils.session import create_session

        self.clear()
        with create_session() as session:
            for dm in session.query(DagModel).filter(DagModel.dag_id.in_(self.alert_dags)):
                dm.is_paused = True

    def emit(self, asset_name: str, extra: dict | None = None):
        from airflow.assets.manager import AssetManager
        from airflow.models.asset import AssetModel
        from airflow.utils.session import create_session

        with create_session() as session:
            asset = session.query(AssetModel).filter(AssetModel.name == asset_name).one_or_none()
            if asset is None:  # a table's Asset exists once a load's alias first emitted it
                uri = f"storefence://warehouse/{asset_name.removeprefix('storefence.')}"
                session.add(asset := AssetModel(name=asset_name, uri=uri, group="storefence"))
                session.flush()
            AssetManager.register_asset_change(asset=asset, extra=extra or {}, session=session)

    def tick(self) -> None:
        """One pass of the scheduler's run creation."""
        from airflow.utils.session import create_session
        from airflow.utils.sqlalchemy import prohibit_commit

        with create_session() as session, prohibit_commit(session) as guard:
            self.runner._create_dagruns_for_dags(guard, session)

    def runs(self, state=None) -> Counter:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from airflow.utils.types import DagRunType

        with create_session() as session:
            q = session.query(DagRun).filter(DagRun.dag_id.in_(self.alert_dags))
            assert q.filter(DagRun.run_type != DagRunType.ASSET_TRIGGERED).count() == 0
            if state is not None:
                q = q.filter(DagRun.state == state)
            return Counter(r.dag_id.removeprefix("storefence_alerts_") for r in q)

    def finish_runs(self) -> None:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState

        with create_session() as session:
            for r in session.query(DagRun).filter(DagRun.dag_id.in_(self.alert_dags),
                                                  DagRun.state.in_((DagRunState.QUEUED, DagRunState.RUNNING))):
                r.state = DagRunState.SUCCESS


@pytest.fixture
def scheduler(airflow_db, monkeypatch):
    # other tests serialized these DAGs moments ago (some under test rule files): write them again
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")
    s = Scheduler()
    s.sync()
    yield s
    s.close()


def _cycle(scheduler, order, tables_too=True, quick_runs=False):
    """One extract cycle: every source's loads emit their tables' events, then its publish emits
    the source's; the scheduler runs after every event. ``quick_runs``: every run the scheduler
    creates finishes before the next event (the worst case for duplicate runs)."""
    specs = {s.source: s for s in load_sources()[0]}

    def tick():
        scheduler.tick()
        if quick_runs:
            scheduler.finish_runs()

    for source in order:
        if tables_too:
            for t in specs[source].tables:  # lineage events: nothing is scheduled on them
                scheduler.emit(f"storefence.{t.table}", {"rows": 1})
                tick()
        scheduler.emit(f"storefence.source.{source}", {"source": source})
        tick()


def test_one_extract_cycle_triggers_each_domain_once(scheduler):
    orders = [SOURCES, tuple(reversed(SOURCES)), ("ads_api", "shop_exports", "shop_api", "reviews_api")]
    for n, order in enumerate(orders, start=1):
        _cycle(scheduler, order, quick_runs=True)
        assert scheduler.runs() == Counter({d: n for d in DOMAINS}), order


def test_a_domain_still_running_gets_one_run_for_the_cycles_that_arrived_meanwhile(scheduler):
    _cycle(scheduler, SOURCES, tables_too=False)
    assert scheduler.runs() == Counter({d: 1 for d in DOMAINS})
    _cycle(scheduler, SOURCES, tables_too=False)  # the first runs are still going (max_active_runs=1)
    _cycle(scheduler, SOURCES, tables_too=False)
    assert scheduler.runs() == Counter({d: 1 for d in DOMAINS})
    scheduler.finish_runs()
    scheduler.tick()
    assert scheduler.runs() == Counter({d: 2 for d in DOMAINS})  # one run for both cycles


def test_a_stalled_source_holds_back_only_the_domains_that_read_it(scheduler):
    """reviews_api's cycle does not come: customer waits (its hourly fallback evaluates what
    landed); the others run once; when the cycle comes, customer runs once."""
    _cycle(scheduler, ("shop_api", "ads_api", "shop_exports"))
    assert scheduler.runs() == Counter({d: 1 for d in DOMAINS if d != "customer"})
    _cycle(scheduler, ("reviews_api",))
    assert scheduler.runs()["customer"] == 1 and sum(scheduler.runs().values()) == len(DOMAINS)
