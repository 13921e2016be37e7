"""Source files (``include/sources/*.yaml``): what to read, from where, how often, how fresh.

Parsed into ``SourceSpec`` models; every problem of every file is reported at once with its
file, line and field. This module is read at DAG-parse time: it imports pydantic and PyYAML
only, and reads local files only.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from threshold_operators import located_yaml
from threshold_operators.bundle import PACKAGE_INCLUDE, include_dir
from threshold_operators.durations import Duration
from threshold_operators.warehouse.schema import TABLE_NAMES, table_spec

SOURCES_DIR = PACKAGE_INCLUDE / "sources"  # the pack's own; a DAG reads its bundle's (``bundle``)


class TableSource(BaseModel):
    """One warehouse table fed by the source."""

    model_config = ConfigDict(extra="forbid")
    table: str
    endpoint: str | None = Field(None, description="API path (http sources)")
    pattern: str | None = Field(None, description="file name glob (file sources), e.g. orders_*.csv")
    mapping: dict[str, str] = Field(default_factory=dict, description="source field -> warehouse column")
    max_lag: Duration | None = Field(None, description="overrides the source's max_lag for this table")
    freshness: bool = Field(True, description="false: no freshness check (dimensions that rarely change)")
    quality_suite: str | None = Field(None, description="suite in include/rules/quality/ (default: the table name)")

    @field_validator("table")
    @classmethod
    def _known_table(cls, v):
        if v not in TABLE_NAMES:
            raise ValueError(f"unknown table {v!r}; the warehouse has {', '.join(TABLE_NAMES)}")
        return v

    @model_validator(mode="after")
    def _mapping_targets_columns(self):
        columns = table_spec(self.table).columns
        bad = [c for c in self.mapping.values() if c not in columns]
        if bad:
            raise ValueError(f"mapping targets columns {bad} that {self.table} does not have")
        return self

    @property
    def cursor_field(self) -> str | None:
        return table_spec(self.table).updated_field

    @property
    def suite(self) -> str:
        return self.quality_suite or self.table


class FinishedWhen(BaseModel):
    """When a dropped file is finished (its writer is done) and may be read. A file not yet
    finished is left for a later run."""

    model_config = ConfigDict(extra="forbid")
    unchanged_for: Duration = Field(timedelta(seconds=60), description="size and modification time unchanged "
                                    "this long (used when there is no ready_marker)")
    ready_marker: str | None = Field(None, pattern=r"^\.[A-Za-z0-9_.-]+$", description='e.g. ".ready": the file is '
                                     "finished once <name>.ready exists (the writer makes it last)")
    stuck_after: Duration = Field(timedelta(hours=1), description="with a ready_marker: a file whose marker has "
                                  "not come this long after its last change is told to the data engineers "
                                  "(once per version of the file); it keeps waiting")

    @field_validator("unchanged_for", "stuck_after")
    @classmethod
    def _positive(cls, v, info):
        if v < timedelta(0):
            raise ValueError(f"{info.field_name} cannot be negative")
        return v


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    type: Literal["http", "file"]
    conn_id: str | None = Field(None, description="http: the Airflow HTTP connection (base URL, credentials)")
    folder: str | None = Field(None, description="file: the drop folder; relative paths are under $AIRFLOW_HOME")
    schedule: str = "*/5 * * * *"
    overlap: Duration = timedelta(minutes=15)
    max_lag: Duration = timedelta(hours=2)
    page_size: int = Field(1000, ge=1, le=5000)
    owner: str = "data-engineering"
    quality_gate: bool = Field(True, description="false: load without the Great Expectations gate (types are still checked)")
    finished_when: FinishedWhen = Field(default_factory=FinishedWhen, description="file: when a dropped file may be read")
    accept_header_only: bool = Field(False, description="file: a file with a header and no rows is a valid empty "
                                     "export (default: rejected, as a truncated one would be)")
    tables: list[TableSource] = Field(min_length=1)

    @model_validator(mode="after")
    def _by_type(self):
        if self.type == "http":
            if not self.conn_id:
                raise ValueError("an http source needs conn_id (the Airflow HTTP connection)")
            missing = [t.table for t in self.tables if not t.endpoint]
            if missing:
                raise ValueError(f"tables without an endpoint: {missing}")
        if self.type == "file":
            if not self.folder:
                raise ValueError("a file source needs folder")
            missing = [t.table for t in self.tables if not t.pattern]
            if missing:
                raise ValueError(f"tables without a file pattern: {missing}")
        names = [t.table for t in self.tables]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"tables listed twice: {twice}")
        return self

    @property
    def dag_id(self) -> str:
        return f"storefence_extract_{self.source}"

    def max_lag_of(self, table: TableSource) -> timedelta | None:
        """The table's freshness limit; None when its freshness is not checked."""
        if not table.freshness:
            return None
        return table.max_lag or self.max_lag


def load_source(path: str | Path) -> SourceSpec:
    return located_yaml.validate(SourceSpec, path)


def load_sources(folder: str | Path | None = None) -> tuple[list[SourceSpec], dict[str, list[str]]]:
    """(valid sources, {file: problems}): one broken file does not stop the others.

    The folder defaults to ``$STOREFENCE_SOURCES_DIR``, else include/sources/ of the DAG's bundle.
    """
    folder = folder or os.environ.get("STOREFENCE_SOURCES_DIR") or include_dir() / "sources"
    specs, errors = [], {}
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            specs.append(load_source(path))
        except located_yaml.ConfigFileError as exc:
            errors[str(path)] = exc.problems
    ids = [s.source for s in specs]
    for s in specs:
        if ids.count(s.source) > 1:
            errors.setdefault(s.source, []).append(f"source id {s.source!r} is used by more than one file")
    return [s for s in specs if ids.count(s.source) == 1], errors
