"""The quality gate: a batch is validated by a Great Expectations suite before it lands.

Suites are YAML (``include/rules/quality/<table>.yaml``), readable by analysts:

    table: reviews
    checks:
      - {check: not_null, columns: [review_id, sku, rating, created_at]}
      - {check: unique, columns: [review_id]}
      - {check: between, column: rating, min: 1, max: 5}
      - {check: in_set, column: status, values: [a, b]}
      - {check: not_in_future, columns: [created_at]}
      - {check: references, column: order_id, table: orders, wait: 30m}

Every check becomes a GX Core expectation (``ExpectColumnValuesToNotBeNull``,
``ExpectCompoundColumnsToBeUnique``, ``ExpectColumnValuesToBeBetween``, ...), run with GX's
pandas datasource (its SQL datasource fails on DuckDB). Two kinds of checks are added to every
suite without being written: each column must be present, and each value must have its
column's type (a timestamp that does not parse, a rating of "five").

Rows come out in four groups: good (loaded), refused (quarantined, each with the checks it
failed), waiting (their only fault is a ``references`` parent not loaded yet: a late parent is
not bad data, so they are held for up to the check's ``wait`` and loaded when the parent lands,
``extract.holding``) and superseded (an older version of a key also delivered in the batch; the
latest wins, as the upsert would decide). GX is imported only when a batch is validated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from threshold_operators import located_yaml
from threshold_operators.bundle import PACKAGE_INCLUDE, include_dir
from threshold_operators.durations import Duration
from threshold_operators.engine.gates import MIN_ROWS, QUARANTINE_SHARE
from threshold_operators.warehouse.schema import metadata, table_spec

SUITES_DIR = PACKAGE_INCLUDE / "rules" / "quality"  # the pack's own; a DAG reads its bundle's (``bundle``)
FUTURE_TOLERANCE = timedelta(minutes=5)
PARENT_WAIT = timedelta(minutes=30)  # references: how long a child row waits for its parent by default


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid")
    check: Literal["not_null", "unique", "between", "in_set", "not_in_future", "references"]
    column: str | None = None
    columns: list[str] = Field(default_factory=list)
    min: float | None = None
    max: float | None = None
    values: list[Any] | None = None
    table: str | None = Field(None, description="references: the table whose key the column points to")
    wait: Duration | None = Field(None, description="references: how long a row whose parent is not loaded yet is "
                                                    "held before it is quarantined (default 30m; 0: refused at once)")

    @model_validator(mode="after")
    def _shape(self):
        if self.check in ("not_null", "unique", "not_in_future") and not (self.columns or self.column):
            raise ValueError(f"{self.check} needs columns")
        if self.check in ("between", "in_set", "references") and not self.column:
            raise ValueError(f"{self.check} needs column")
        if self.check == "between" and self.min is None and self.max is None:
            raise ValueError("between needs min, max or both")
        if self.check == "in_set" and not self.values:
            raise ValueError("in_set needs values")
        if self.check == "references" and not self.table:
            raise ValueError("references needs table")
        if self.wait is not None and self.check != "references":
            raise ValueError("wait applies to references checks only")
        if self.wait is not None and self.wait < timedelta(0):
            raise ValueError("wait cannot be negative")
        return self

    @property
    def targets(self) -> list[str]:
        return self.columns or [self.column]

    @property
    def label(self) -> str:
        """references: the name its failures carry (``references(order_id -> orders)``)."""
        return f"references({self.column} -> {self.table})"

    @property
    def parent_wait(self) -> timedelta:
        return PARENT_WAIT if self.wait is None else self.wait


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str
    checks: list[Check] = Field(default_factory=list)
    min_rows: int = Field(MIN_ROWS, ge=1, description="the quarantine share is a verdict only over at least this many "
                                                 "rows (the latest runs pooled; engine.gates)")
    max_refused: float = Field(QUARANTINE_SHARE, ge=0, le=1, description="the table fails its gate when more than this share "
                                                             "of those rows was refused")

    @model_validator(mode="after")
    def _columns_exist(self):
        known = set(table_spec(self.table).columns) if self.table in metadata.tables else set()
        if not known:
            raise ValueError(f"unknown table {self.table!r}")
        bad = sorted({c for chk in self.checks for c in chk.targets if c not in known})
        if bad:
            raise ValueError(f"checks name columns {bad} that {self.table} does not have")
        return self


def load_suite(name: str, folder: Path | None = None) -> Suite:
    path = (folder or include_dir() / "rules" / "quality") / f"{name}.yaml"
    if not path.exists():
        return Suite(table=name)
    return located_yaml.validate(Suite, path)


@dataclass
class GateResult:
    good: Any  # pandas DataFrame, typed like the warehouse table
    refused: list[dict] = field(default_factory=list)  # {row_no, record_key, failed_checks, raw_record}
    # {row_no, record_key, failed_checks, raw_record, version, waiting_for: [{table, column, value}], wait}
    waiting: list[dict] = field(default_factory=list)
    superseded: int = 0
    checks_run: int = 0
    validation: dict | None = None  # GX's result, JSON-ready


def _typed(df, table: str):
    """Convert raw API values to the table's types; note the values that would not convert."""
    import numpy as np
    import pandas as pd
    from sqlalchemy import DateTime, Integer, Numeric

    out = pd.DataFrame(index=df.index)
    bad_type: dict[str, Any] = {}
    for col in metadata.tables[table].columns:
        raw = df[col.name] if col.name in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)
        if isinstance(col.type, DateTime):
            conv = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
        elif isinstance(col.type, Integer | Numeric):
            conv = pd.to_numeric(raw, errors="coerce")
            if isinstance(col.type, Integer):
                whole = conv.isna() | (np.floor(conv) == conv)
                conv = conv.where(whole)
        else:
            conv = raw.where(raw.isna(), raw.astype(str)).astype(object)
        out[col.name] = conv
        bad_type[col.name] = raw.notna() & conv.isna()
    return out, bad_type


def _expectations(suite: Suite, table: str, now: datetime):
    import great_expectations as gx

    E = gx.expectations
    spec = table_spec(table)
    out = []
    for chk in suite.checks:
        if chk.check == "not_null":
            out += [(f"not_null({c})", E.ExpectColumnValuesToNotBeNull(column=c)) for c in chk.targets]
        elif chk.check == "unique":
            cols = chk.targets
            exp = (E.ExpectColumnValuesToBeUnique(column=cols[0]) if len(cols) == 1
                   else E.ExpectCompoundColumnsToBeUnique(column_list=cols))
            out.append((f"unique({', '.join(cols)})", exp))
        elif chk.check == "between":
            out.append((f"between({chk.column}, {chk.min}, {chk.max})",
                        E.ExpectColumnValuesToBeBetween(column=chk.column, min_value=chk.min, max_value=chk.max)))
        elif chk.check == "in_set":
            out.append((f"in_set({chk.column})", E.ExpectColumnValuesToBeInSet(column=chk.column, value_set=chk.values)))
        elif chk.check == "not_in_future":
            for c in chk.targets:
                out.append((f"not_in_future({c})", E.ExpectColumnValuesToBeBetween(column=c, max_value=now + FUTURE_TOLERANCE)))
        elif chk.check == "references":
            out.append((chk.label,
                        E.ExpectColumnValuesToBeInSet(column=f"__ref__{chk.column}", value_set=[True])))
    for c in spec.columns:
        out.append((f"type({c})", E.ExpectColumnValuesToBeInSet(column=f"__type__{c}", value_set=[True])))
    return out


def _quiet_gx_context():
    import logging

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
    return ctx


def typed_batch(records: list[dict], table: str) -> GateResult:
    """No gate: convert to the table's types; a value that does not convert is still refused."""
    import json

    import pandas as pd

    spec = table_spec(table)
    if not records:
        return GateResult(good=pd.DataFrame(columns=list(spec.columns)))
    raw = pd.DataFrame.from_records(records)
    df, bad_type = _typed(raw, table)
    bad = pd.concat(bad_type, axis=1).any(axis=1) if bad_type else pd.Series(False, index=df.index)
    refused = [{"row_no": int(i), "record_key": None,
                "failed_checks": "; ".join(f"type({c})" for c, m in bad_type.items() if m.iloc[i]),
                "raw_record": json.dumps(records[i], default=str, ensure_ascii=False)} for i in df.index[bad]]
    return GateResult(good=df[~bad][list(spec.columns)].reset_index(drop=True), refused=refused)


def validate_batch(records: list[dict], table: str, suite: Suite, *, now: datetime,
                   known_keys=None, source: str = "") -> GateResult:
    """Run the gate over raw records (dicts as the source delivered them, already mapped to
    warehouse column names).

    :param known_keys: ``(table, column, values) -> set`` of values that exist in the warehouse,
        for ``references`` checks (values delivered in the same batch count too).
    """
    import json

    import pandas as pd

    spec = table_spec(table)
    if not records:
        return GateResult(good=pd.DataFrame(columns=list(spec.columns)))
    raw = pd.DataFrame.from_records(records)
    raw.index = pd.RangeIndex(len(raw))
    df, bad_type = _typed(raw, table)

    # Older versions of a key delivered in the same batch are superseded, not refused.
    superseded = 0
    cursor = spec.updated_field
    if cursor and all(k in df for k in spec.key):
        latest = df.groupby(list(spec.key), dropna=False)[cursor].transform("max")
        older = df[cursor] < latest
        superseded = int(older.sum())
        df, raw = df[~older], raw[~older]
        bad_type = {c: m[~older] for c, m in bad_type.items()}

    frame = df.copy()
    for c, mask in bad_type.items():
        frame[f"__type__{c}"] = ~mask
    for chk in suite.checks:
        if chk.check == "references":
            if known_keys is None:  # nothing to look up against: the check cannot refuse anything
                frame[f"__ref__{chk.column}"] = True
                continue
            present = known_keys(chk.table, chk.column, sorted(set(df[chk.column].dropna())))
            frame[f"__ref__{chk.column}"] = df[chk.column].isna() | df[chk.column].isin(present)

    ctx = _quiet_gx_context()
    import great_expectations as gx

    batch = (ctx.data_sources.add_pandas("storefence").add_dataframe_asset(table)
             .add_batch_definition_whole_dataframe("batch")
             .get_batch(batch_parameters={"dataframe": frame.reset_index(drop=True)}))
    gx_suite = gx.ExpectationSuite(name=f"{source or 'storefence'}.{table}")
    labels = []
    for label, exp in _expectations(suite, table, now):
        exp.meta = {"storefence_check": label}
        gx_suite.add_expectation(exp)
        labels.append(label)
    result = batch.validate(gx_suite, result_format={"result_format": "COMPLETE"})

    failed: dict[int, list[str]] = {}
    for r in result.results:
        if r.success:
            continue
        label = (r.expectation_config.meta or {}).get("storefence_check", r.expectation_config.type)
        for pos in r.result.get("unexpected_index_list") or []:
            failed.setdefault(int(pos), []).append(label)

    positions = frame.index.to_numpy()
    parents = {chk.label: chk for chk in suite.checks if chk.check == "references" and chk.parent_wait > timedelta(0)}
    refused, waiting = [], []
    for pos, checks in sorted(failed.items()):
        # a value that did not convert is a type problem, not a missing value
        checks = [c for c in checks if not (c.startswith("not_null(") and f"type({c[9:]}" in checks)]
        idx = positions[pos]
        rec = records[idx]
        key = "|".join(str(rec.get(k)) for k in spec.key) if all(k in rec for k in spec.key) else None
        row = {"row_no": int(idx), "record_key": key, "failed_checks": "; ".join(checks),
               "raw_record": json.dumps(rec, default=str, ensure_ascii=False)}
        if key is not None and all(c in parents for c in checks):  # only a parent missing: wait for it
            late = [parents[c] for c in checks]
            version = df[cursor].iloc[pos] if cursor else None
            waiting.append({**row, "version": None if version is None or pd.isna(version) else version.isoformat(),
                            "waiting_for": [{"table": c.table, "column": c.column, "value": rec.get(c.column)}
                                            for c in late],
                            "wait": min(c.parent_wait for c in late)})
        else:
            refused.append(row)
    keep = [i for i in range(len(frame)) if i not in failed]
    good = df.iloc[keep][list(spec.columns)].reset_index(drop=True)
    return GateResult(good=good, refused=refused, waiting=waiting, superseded=superseded, checks_run=len(labels),
                      validation=result.describe_dict() if hasattr(result, "describe_dict") else None)

