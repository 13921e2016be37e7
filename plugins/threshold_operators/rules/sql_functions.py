"""The SQL functions a metric query (and a compiled rule) may call: pure functions of their
arguments, the same in DuckDB and PostgreSQL. Anything else is refused by ``storefence lint``
and again before a compiled rule runs (``rules.sql_check.statement_problems``).

Why an allow-list: a warehouse offers functions that read files (DuckDB ``read_text``,
``read_csv``, ``read_blob``, ``glob``; PostgreSQL ``pg_read_file``, ``lo_import``), reach other
servers (``dblink``, ``query``), change settings (``set_config``), sleep, or read the clock.
New functions appear with every release; a rule file is data, so only what is listed runs.

The keys are sqlglot's names for the functions it knows (one name whatever the spelling:
``power`` and ``pow`` are both ``pow``; ``date_trunc`` is ``timestamptrunc``); functions sqlglot
does not know are matched by their name as written, in lower case. The value is how the
function is written in SQL (for messages and docs/rules.md). To allow another function, add it
here with a test that it is pure in both warehouses.

Not allowed on purpose: ``now()``, ``current_timestamp``, ``current_date``, ``random()``: a
rule is evaluated for a window, not for the moment it runs (use ``{{ window_end }}``).
"""

from __future__ import annotations

ALLOWED_FUNCTIONS: dict[str, str] = {
    # structure: operators sqlglot models as functions
    "and": "AND", "or": "OR", "case": "CASE", "if": "CASE WHEN", "cast": "CAST", "trycast": "TRY_CAST",
    # aggregates
    "count": "count", "countif": "count_if", "sum": "sum", "avg": "avg", "min": "min", "max": "max",
    "stddev": "stddev", "stddevpop": "stddev_pop", "stddevsamp": "stddev_samp",
    "variance": "variance / var_samp", "variancepop": "var_pop", "median": "median",
    "percentilecont": "percentile_cont", "percentiledisc": "percentile_disc",
    "logicaland": "bool_and", "logicalor": "bool_or", "corr": "corr", "covarpop": "covar_pop",
    "covarsamp": "covar_samp",
    # window functions
    "rownumber": "row_number", "rank": "rank", "denserank": "dense_rank", "percentrank": "percent_rank",
    "cumedist": "cume_dist", "ntile": "ntile", "lag": "lag", "lead": "lead", "firstvalue": "first_value",
    "lastvalue": "last_value", "nthvalue": "nth_value",
    # conditionals
    "coalesce": "coalesce", "nullif": "nullif", "greatest": "greatest", "least": "least",
    # arithmetic
    "abs": "abs", "ceil": "ceil", "floor": "floor", "round": "round", "sqrt": "sqrt", "ln": "ln", "log": "log",
    "exp": "exp", "pow": "power", "sign": "sign",
    # text
    "lower": "lower", "upper": "upper", "length": "length", "substring": "substring", "trim": "trim",
    "concat": "concat", "replace": "replace", "left": "left", "right": "right", "strposition": "strpos",
    "splitpart": "split_part", "pad": "lpad / rpad", "startswith": "starts_with",
    # time (AT TIME ZONE and INTERVAL are operators, always allowed)
    "timestamptrunc": "date_trunc", "datetrunc": "date_trunc", "extract": "extract", "date_part": "date_part",
    # the hourly grid of `no_data: zero|alert` rules (compiled by the engine)
    "generateseries": "generate_series", "explodinggenerateseries": "generate_series",
}
