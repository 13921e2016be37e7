"""A human summary of the warehouse: tables, rows, time span; optionally the labelled incidents."""

from __future__ import annotations

from threshold_operators.warehouse.schema import TABLES


def table_stats(hook) -> list[dict]:
    """Rows and time span (of each table's change-tracking column) for every canonical table."""
    from sqlalchemy import inspect, text

    rows = []
    with hook.engine.connect() as con:
        present = set(inspect(con).get_table_names())
        for table in TABLES:
            if table.name not in present:
                rows.append({"table": table.name, "rows": None, "from": None, "to": None})
                continue
            field = table.info["updated_field"]
            span = f", MIN({field}), MAX({field})" if field else ", NULL, NULL"
            n, lo, hi = con.execute(text(f"SELECT COUNT(*){span} FROM {table.name}")).one()
            rows.append({"table": table.name, "rows": n, "from": lo, "to": hi})
    hook.engine.dispose()
    return rows


def _fmt_ts(value) -> str:
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else str(value)


def render(stats: list[dict], labels: dict | None = None, target: str = "") -> str:
    lines = [f"Warehouse {target}".rstrip(), ""]
    lines.append(f"{'table':<22}{'rows':>12}  {'from (UTC)':<17}  {'to (UTC)':<17}")
    for r in stats:
        n = "missing" if r["rows"] is None else f"{r['rows']:,}"
        lines.append(f"{r['table']:<22}{n:>12}  {_fmt_ts(r['from']):<17}  {_fmt_ts(r['to']):<17}")
    total = sum(r["rows"] or 0 for r in stats)
    lines.append(f"{'total':<22}{total:>12,}")
    if labels:
        lines += ["", f"Incidents ({len(labels.get('incidents', []))}), local times:"]
        for inc in labels.get("incidents", []):
            start = inc["start_local"][:16].replace("T", " ")
            lines.append(f"  {start}  {inc['id']:<26} {inc['entity_type']}={inc['entity']:<16} expect: {', '.join(inc['expect'])}")
        for ev in labels.get("planned_events", []):
            lines.append(f"  planned: {ev['name']} {ev['start'][:10]} .. {ev['end'][:10]} (demand x{ev['demand_factor']})")
    return "\n".join(lines)
