"""File drops: only finished files are read; a file refused whole is a data-quality event that
reaches the data engineers and lands in rejected/, never in done/. Real files (their times set
with os.utime), a pinned clock, the real warehouse (DuckDB and PostgreSQL) and state store."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.extract.conftest import NOW
from threshold_operators import located_yaml
from threshold_operators.extract import file_drop
from threshold_operators.extract.file_drop import fetch_file_table, finish, tell_data_engineers
from threshold_operators.extract.load import load_staged
from threshold_operators.extract.sources import SourceSpec, load_source

ITEMS = ("order_id,line_no,shop_id,sku,quantity,unit_price,created_at\n"
         "X-1,1,shop-09,SKU-A,1,120.50,2026-09-28T10:00:00Z\n"
         "X-2,1,shop-09,SKU-B,2,40.00,2026-09-28T11:00:00Z\n")
HEADER = ITEMS.splitlines()[0] + "\n"


def spec(folder, **extra) -> SourceSpec:
    return SourceSpec.model_validate({"source": "drops", "type": "file", "folder": str(folder),
                                      "tables": [{"table": "order_items", "pattern": "items_*.csv"}], **extra})


def drop(folder, name: str, text: str | bytes, age: timedelta = timedelta(hours=1)):
    """A file written ``age`` before NOW (its modification time, set with os.utime)."""
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    t = (NOW - age).timestamp()
    os.utime(path, (t, t))
    return path


def names(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def folder(tmp_path):
    """The drop folder (staging lives beside it, in tmp_path/staging)."""
    path = tmp_path / "drop"
    path.mkdir()
    return path


def fetch(source, run_id="run-1", now=NOW):
    return fetch_file_table(source, source.tables[0], run_id=run_id, now=now)


# --- finished files only ------------------------------------------------------------------------
def test_a_file_changed_recently_is_left_for_a_later_run(folder):
    source = spec(folder)
    drop(folder, "items_old.csv", ITEMS)
    drop(folder, "items_new.csv", ITEMS.replace("X-", "Y-"), age=timedelta(seconds=20))
    first = fetch(source)
    assert first.files == ["items_old.csv"] and first.rows == 2
    assert [w["file"] for w in first.waiting] == ["items_new.csv"]
    assert "changed 20 s ago" in first.waiting[0]["reason"] and "60 s" in first.waiting[0]["reason"]
    assert first.rejected == []
    finish(source, first)
    assert names(folder / "done") == ["items_old.csv"] and (folder / "items_new.csv").exists()

    later = fetch(source, "run-2", NOW + timedelta(seconds=40))  # 60 s unchanged now
    assert later.files == ["items_new.csv"] and later.waiting == []


def test_the_quiet_time_is_configured_per_source(folder):
    source = spec(folder, finished_when={"unchanged_for": "10m"})
    drop(folder, "items_a.csv", ITEMS, age=timedelta(minutes=9))
    assert fetch(source).files == [] and len(fetch(source).waiting) == 1
    assert fetch(source, now=NOW + timedelta(minutes=1)).files == ["items_a.csv"]


def test_a_file_that_changes_while_it_is_read_is_left(folder, monkeypatch):
    source = spec(folder)
    path = drop(folder, "items_a.csv", ITEMS)
    read = file_drop._read

    def read_while_the_writer_appends(p, table, **kw):
        rows = read(p, table, **kw)
        with open(p, "a", encoding="utf-8") as fh:  # the export tool writes its next chunk
            fh.write("X-3,1,shop-09,SKU-C,1,10.00,2026-09-28T12:00:00Z\n")
        return rows

    monkeypatch.setattr(file_drop, "_read", read_while_the_writer_appends)
    manifest = fetch(source)
    assert manifest.files == [] and manifest.rows == 0
    assert manifest.waiting == [{"file": "items_a.csv", "reason": "changed while it was read"}]
    finish(source, manifest)
    assert path.exists() and not (folder / "done").exists()


def test_a_ready_marker_says_when_a_file_is_finished(folder):
    source = spec(folder, finished_when={"ready_marker": ".ready"})
    drop(folder, "items_a.csv", ITEMS, age=timedelta(days=1))  # old, but no marker yet
    drop(folder, "items_b.csv", ITEMS.replace("X-", "Y-"), age=timedelta(seconds=1))
    drop(folder, "items_b.csv.ready", b"", age=timedelta(seconds=1))
    manifest = fetch(source)
    assert manifest.files == ["items_b.csv"] and manifest.rows == 2
    [waiting] = manifest.waiting
    assert (waiting["file"], waiting["reason"]) == ("items_a.csv", "waiting for its marker <name>.ready")
    assert waiting["stuck_since"] == (NOW - timedelta(days=1)).isoformat()  # a day without its marker: told
    finish(source, manifest)
    assert names(folder / "done") == ["items_b.csv", "items_b.csv.ready"]
    assert names(folder) == ["done", "items_a.csv"]


def test_finished_when_is_validated_with_its_place(folder):
    path = folder / "drops.yaml"
    path.write_text("source: drops\ntype: file\nfolder: x\nfinished_when:\n  ready_marker: ready/../x\n"
                    "  unchanged_for: soon\ntables:\n  - {table: orders, pattern: 'o_*.csv'}\n", encoding="utf-8")
    with pytest.raises(located_yaml.ConfigFileError) as err:
        load_source(path)
    text = "\n".join(err.value.problems)
    assert "drops.yaml:5: finished_when.ready_marker" in text and "drops.yaml:6: finished_when.unchanged_for" in text
    assert spec(folder).finished_when.unchanged_for == timedelta(seconds=60)  # the default
    assert spec(folder).finished_when.ready_marker is None


# --- files refused whole ------------------------------------------------------------------------
REFUSED = {
    "items_empty.csv": ("", "the file is empty"),
    "items_header_only.csv": (HEADER, "a header but no rows"),
    "items_truncated.csv": (ITEMS + "X-3,1,shop-09,SK", "line 4: 4 fields, the header has 7"),
    "items_renamed.csv": (ITEMS.replace("unit_price", "price"), "column(s) ['price'] that order_items does not have"),
    "items_twice.csv": (ITEMS.replace("quantity", "sku"), "['sku'] more than once"),
    "items_nokey.csv": ("sku,quantity\nSKU-A,1\n", "lacks the key column(s) ['order_id', 'line_no']"),
    "items_gbk.csv": ("订单号,金额\n".encode("gbk"), "not UTF-8"),
}


def test_each_kind_of_bad_file_is_rejected_with_its_reason_and_moved_only_after_the_load(folder):
    source = spec(folder)
    for name, (text, _) in REFUSED.items():
        drop(folder, name, text)
    drop(folder, "items_good.csv", ITEMS)
    manifest = fetch(source)
    assert manifest.files == ["items_good.csv"] and manifest.rows == 2
    reasons = {r["file"]: r["reason"] for r in manifest.rejected}
    assert set(reasons) == set(REFUSED)
    for name, (_, why) in REFUSED.items():
        assert why in reasons[name], (name, reasons[name])
    assert set(names(folder)) == set(REFUSED) | {"items_good.csv"}  # nothing moves before the load commits

    again = fetch(source, "run-1")  # a retried fetch sees the same
    assert again.rejected == manifest.rejected
    finish(source, manifest)
    assert names(folder / "done") == ["items_good.csv"]  # never a rejected file in done/
    rejected = folder / "rejected"
    assert {p.name for p in rejected.glob("*.csv")} == set(REFUSED)
    for name, (_, why) in REFUSED.items():
        assert why in (rejected / f"{name}.reason.txt").read_text(encoding="utf-8")
    finish(source, manifest)  # a retried load: nothing left to move, nothing lost
    assert {p.name for p in rejected.glob("*.csv")} == set(REFUSED)


def test_a_header_only_file_can_be_a_valid_empty_export(folder):
    source = spec(folder, accept_header_only=True)
    drop(folder, "items_quiet_night.csv", HEADER)
    manifest = fetch(source)
    assert manifest.files == ["items_quiet_night.csv"] and manifest.rows == 0 and manifest.rejected == []


def test_a_name_rejected_twice_keeps_both_files(folder):
    source = spec(folder)
    drop(folder, "items_a.csv", "")
    finish(source, fetch(source, "run-1"))
    drop(folder, "items_a.csv", HEADER)
    finish(source, fetch(source, "run-2"))
    rejected = folder / "rejected"
    assert names(rejected) == ["items_a.1.csv", "items_a.1.csv.reason.txt", "items_a.csv", "items_a.csv.reason.txt"]
    assert "empty" in (rejected / "items_a.csv.reason.txt").read_text(encoding="utf-8")
    assert "header but no rows" in (rejected / "items_a.1.csv.reason.txt").read_text(encoding="utf-8")


# --- the event and who hears of it --------------------------------------------------------------
def test_a_rejection_is_a_data_quality_event_that_fails_the_gate(warehouse, tmp_path):
    from threshold_operators.engine.gates import failing_tables

    source = spec(tmp_path / "drop", quality_gate=False, max_lag="30d")  # only the rejection is the point
    (tmp_path / "drop").mkdir()
    drop(tmp_path / "drop", "items_good.csv", ITEMS)
    drop(tmp_path / "drop", "items_truncated.csv", ITEMS + "X-3,1,shop-09,SK")
    manifest = fetch(source)
    result = load_staged(source, source.tables[0], warehouse=warehouse, run_id="run-1", now=NOW)
    assert result.loaded == 2
    with warehouse.engine.connect() as con:
        events = con.execute(sa.text("SELECT event_id, source, table_name, kind, detail FROM data_quality_events")).all()
    assert [(e[1], e[2], e[3]) for e in events] == [("drops", "order_items", "rejected")]
    assert events[0][0] == "run-1|order_items|rejected|items_truncated.csv"
    assert "items_truncated.csv" in events[0][4] and "line 4" in events[0][4]
    gate = failing_tables(warehouse, ["order_items"])
    assert gate["order_items"]["kind"] == "rejected" and "items_truncated.csv" in gate["order_items"]["detail"]

    load_staged(source, source.tables[0], warehouse=warehouse, run_id="run-1", now=NOW)  # a retried load
    with warehouse.engine.connect() as con:
        assert con.execute(sa.text("SELECT COUNT(*) FROM data_quality_events")).scalar_one() == 1
    finish(source, manifest)

    drop(tmp_path / "drop", "items_next.csv", ITEMS.replace("X-", "Z-"))  # the next run brings a good file
    fetch(source, "run-2", NOW + timedelta(minutes=5))
    load_staged(source, source.tables[0], warehouse=warehouse, run_id="run-2", now=NOW + timedelta(minutes=5))
    assert failing_tables(warehouse, ["order_items"]) == {}
    warehouse.engine.dispose()


def test_the_data_engineers_are_told_once_per_run_and_table(tmp_path, monkeypatch):
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.alerting.store import StateStore

    state = f"sqlite:///{tmp_path / 'state.sqlite'}"
    source = spec(tmp_path / "drop")
    (tmp_path / "drop").mkdir()
    drop(tmp_path / "drop", "items_empty.csv", "")
    drop(tmp_path / "drop", "items_nokey.csv", "sku,quantity\nSKU-A,1\n")
    manifest = fetch(source)
    queued = tell_data_engineers(source, manifest, NOW, state_url=state, deliver=False)
    routing = load_routing()
    channels = routing.channels_for(routing.team_of("data_engineering"), "yellow")
    assert queued == len(channels) > 0
    assert tell_data_engineers(source, manifest, NOW + timedelta(minutes=1), state_url=state, deliver=False) == 0
    rows = StateStore(url=state).notifications()
    assert sorted(r["route"] for r in rows) == sorted(channels) and {r["event"] for r in rows} == {"file_rejected"}
    text = rows[0]["payload"]["text_en"]
    assert "items_empty.csv: the file is empty" in text and "items_nokey.csv" in text and "rejected" in text
    assert json.loads(json.dumps(rows[0]["payload"]["data"]))["table"] == "order_items"
    assert tell_data_engineers(source, fetch(source, "run-2"), NOW, state_url=state, deliver=False) == len(channels)
    empty = fetch(spec(tmp_path / "none"), "run-3")
    assert tell_data_engineers(spec(tmp_path / "none"), empty, NOW, state_url=state, deliver=False) == 0


def test_a_file_whose_marker_never_comes_is_told_once_per_version(tmp_path):
    from threshold_operators.alerting.store import StateStore

    state = f"sqlite:///{tmp_path / 'state.sqlite'}"
    folder = tmp_path / "drop"
    folder.mkdir()
    source = spec(folder, finished_when={"ready_marker": ".ready", "stuck_after": "2h"})
    drop(folder, "items_a.csv", ITEMS, age=timedelta(minutes=90))
    young = fetch(source)
    assert young.files == [] and "stuck_since" not in young.waiting[0]  # 90 min: not yet stuck
    assert tell_data_engineers(source, young, NOW, state_url=state, deliver=False) == 0

    later = NOW + timedelta(hours=1)  # 2.5 h without its marker
    stuck = fetch(source, "run-2", later)
    assert stuck.files == [] and stuck.waiting[0]["stuck_since"] == (NOW - timedelta(minutes=90)).isoformat()
    told = tell_data_engineers(source, stuck, later, state_url=state, deliver=False)
    assert told > 0
    # every later run finds it still waiting: nobody is told again
    again = fetch(source, "run-3", later + timedelta(hours=5))
    assert tell_data_engineers(source, again, later + timedelta(hours=5), state_url=state, deliver=False) == 0
    rows = StateStore(url=state).notifications()
    assert len(rows) == told and {r["event"] for r in rows} == {"file_stuck"}
    text = rows[0]["payload"]["text_en"]
    assert "items_a.csv" in text and "items_a.csv.ready" in text and "2.5 h ago" in text
    # the writer rewrites the file (a new version), and again no marker: told about that one
    drop(folder, "items_a.csv", ITEMS + "X-3,1,shop-09,SKU-C,1,9.00,2026-09-28T12:00:00Z\n", age=timedelta(hours=3))
    newer = fetch(source, "run-4", NOW)
    assert tell_data_engineers(source, newer, NOW, state_url=state, deliver=False) == told
    (folder / "items_a.csv.ready").write_bytes(b"")
    assert fetch(source, "run-5", NOW).files == ["items_a.csv"]
