"""The SQL of the DuckDB log engine (:mod:`aura_ops.logs_duckdb`): one scan per file.

Every row is put in a class: ``0`` *plain* (counted in SQL), ``1`` *other* (its fields -- JSON
-- or its text -- plain-text logs -- go back to the Python aggregator), ``2`` *unfaithful*
(JSON only: a value whose text DuckDB gives differently from what Python reads, e.g. a
numeric level; the whole file is then read by Python), ``3`` plain but outside the window.
A row is plain only when the Python normaliser (:func:`aura_ops.logs_formats.finish`) is known
to read it the same way and it is not an error: anything unusual goes the Python way.

One ``GROUPING SETS`` query returns counters per time bucket and endpoint, a histogram of
exact durations per endpoint, and the other rows with their multiplicity.
"""

from __future__ import annotations

from pathlib import Path

from .logs_formats import ALIASES

__all__ = ["FIELDS", "json_query", "text_query"]

#: JSON fields that the summary reads; the *other* rows come back with these.
FIELDS = (
    "ts",
    "level",
    "message",
    "correlation_id",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "error_type",
)
_TEXT_FIELDS = ("message", "correlation_id", "route", "path", "error_type")
#: Levels (upper-cased) that are never an error for Python: such rows can be plain.
_PLAIN_LEVELS = ("INFO", "DEBUG", "WARNING", "WARN", "TRACE", "NOTICE", "INFORMATION")


def _one_of(expr: str, words: tuple[str, ...]) -> str:
    """``expr`` equals one of ``words`` (an OR chain: DuckDB plans ``IN`` lists as joins)."""
    return "(" + " OR ".join(f"{expr} = {_s(w)}" for w in words) + ")"


_LEVEL_ALIASES = ("severity", "lvl", "levelname", "log.level")
_STATUS_ALIASES = ("status_code", "statusCode", "http_status", "msg", "@message")
_DURATION_ALIASES = ("latency_ms", "elapsed_ms", "response_time_ms")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _s(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _plain_text(col: str) -> str:
    """``col`` cannot have been a JSON object, array or boolean (Python would see a dict, a
    list or a bool, not the text DuckDB gives)."""
    c = _q(col)
    return f"({c} IS NULL OR NOT ({c} ^@ '{{' OR {c} ^@ '[' OR {c} = 'true' OR {c} = 'false'))"


def _numeric_start(col: str) -> str:
    c = _q(col)
    return f"({c}[1] BETWEEN '0' AND '9' OR {c} ^@ '-')"


def _absent(canonical: str, aliases: tuple[str, ...]) -> str:
    """The canonical key is there, or none of its aliases is (Python would take the alias)."""
    return f"({_q(canonical)} IS NOT NULL OR coalesce({', '.join(map(_q, aliases))}) IS NULL)"


def _plain_json() -> str:
    """A JSON row whose summary Python would compute exactly as SQL does, not an error: the
    values a plain row is counted by are checked, aliases only where they would count."""
    return " AND ".join(
        [
            "_a_tsu IS NOT NULL",
            f"(level IS NULL OR {_one_of('level', _PLAIN_LEVELS)}"
            f" OR {_one_of('upper(level)', _PLAIN_LEVELS)})",
            "(status IS NULL OR (length(status) = 3 AND _a_st BETWEEN 100 AND 499))",
            "(duration_ms IS NULL OR (_a_d IS NOT NULL AND duration_ms[-1] BETWEEN '0' AND '9'"
            f" AND {_numeric_start('duration_ms')}))",
            *(_plain_text(c) for c in ("method", "route", "path")),
            f"(route IS NOT NULL OR path IS NULL OR NOT {_numeric_start('path')})",
            _absent("level", _LEVEL_ALIASES),
            _absent("status", _STATUS_ALIASES),
            _absent("duration_ms", _DURATION_ALIASES),
            _absent("method", ("http_method",)),
            _absent("route", ("endpoint",)),
            "NOT (status IS NULL AND message IS NOT NULL AND contains(message, 'HTTP '))",
            f"(status IS NOT NULL OR {_plain_text('message')})",
        ]
    )


def _faithful() -> str:
    """Every JSON value is text that Python would read the same way from the JSON value."""
    return " AND ".join(
        [
            "ts IS NOT NULL",
            "NOT ts ^@ '-'",  # a negative epoch: Python reads the number, not the text
            *(_plain_text(c) for c in ("ts", "level", "method", *_TEXT_FIELDS)),
            f"(level IS NULL OR NOT {_numeric_start('level')})",  # numeric levels: 40 = WARNING
            "(status IS NULL OR (length(status) = 3 AND _a_st BETWEEN 100 AND 999))",
            "(duration_ms IS NULL OR (_a_d IS NOT NULL AND duration_ms[-1] BETWEEN '0' AND '9'"
            f" AND {_numeric_start('duration_ms')}))",
            # a number as path: Python ignores it (not a str); SQL would take it as the route
            f"(route IS NOT NULL OR path IS NULL OR NOT {_numeric_start('path')})",
            *(f"{_q(a)} IS NULL" for a in sorted(ALIASES)),
        ]
    )


def _plain_ts(col: str) -> str:
    """``col`` is ISO 8601 UTC (or naive) with a ``T``, 1970 or later, hour below 24, and no
    fraction or one of 3 or 6 digits (the digits themselves are checked by the cast)."""
    c = col
    return f"""({c} LIKE '____-__-__T__:__:__%' AND {c} >= '1970' AND {c}[12:13] < '24'
      AND CASE length({c})
        WHEN 19 THEN TRUE WHEN 20 THEN {c}[20] = 'Z' WHEN 25 THEN {c}[20:] = '+00:00'
        WHEN 23 THEN {c}[20] = '.' WHEN 26 THEN {c}[20] = '.'
        WHEN 24 THEN {c}[20] = '.' AND {c}[24] = 'Z' WHEN 27 THEN {c}[20] = '.' AND {c}[27] = 'Z'
        WHEN 29 THEN {c}[20] = '.' AND {c}[24:] = '+00:00'
        WHEN 32 THEN {c}[20] = '.' AND {c}[27:] = '+00:00'
        ELSE FALSE END)"""


def _window(since_us: int | None, until_us: int | None) -> str:
    bounds = [f"_a_tsu >= {since_us}"] * (since_us is not None)
    bounds += [f"_a_tsu < {until_us}"] * (until_us is not None)
    return " AND ".join(bounds) or "TRUE"


def _grouped(step_us: int, plain_cols: str, other_cols: str, other_keys: str) -> str:
    """The common tail: plain columns, other rows' fields, the four grouping sets."""
    return f""", rows AS (
  SELECT _a_cls,
    CASE WHEN _a_cls = 0 THEN _a_tsu // {step_us} END AS b,
    CASE WHEN _a_cls = 0 THEN _a_tsu END AS t,
    {plain_cols},
    {other_cols}
  FROM classed
)
SELECT GROUPING(b) AS gb, GROUPING(d) AS gd, GROUPING({other_keys}) AS ge,
  _a_cls, b, m, r, d, {other_keys},
  count(*) AS n,
  count(s) AS requests,
  count(*) FILTER (WHERE s >= 400 AND s < 500) AS c4xx,
  count(*) FILTER (WHERE s = 429) AS c429,
  min(t) AS tmin, max(t) AS tmax
FROM rows
GROUP BY GROUPING SETS ((_a_cls, b, m, r), (_a_cls, m, r, d), (_a_cls, {other_keys}))
"""


def json_query(path: Path, step_us: int, since_us: int | None, until_us: int | None) -> str:
    """The scan of one JSON-lines file; other rows come back as the :data:`FIELDS`."""
    names = list(FIELDS) + sorted(ALIASES)
    columns = "{" + ", ".join(f"{_s(n)}: 'VARCHAR'" for n in names) + "}"
    others = ", ".join(f"CASE WHEN _a_cls = 1 THEN {_q(f)} END AS e_{f}" for f in FIELDS)
    plain = """CASE WHEN _a_cls = 0 THEN _a_st END AS s,
    CASE WHEN _a_cls = 0 THEN coalesce(nullif(method, ''), '?') END AS m,
    CASE WHEN _a_cls = 0 THEN coalesce(nullif(CASE WHEN route IS NULL
      THEN split_part(path, '?', 1) ELSE route END, ''), '?') END AS r,
    CASE WHEN _a_cls = 0 THEN _a_d END AS d"""
    head = f"""
WITH src AS (
  SELECT * FROM read_json({_s(str(path))}, format = 'newline_delimited', records = 'true',
                          columns = {columns})
), typed AS (
  SELECT *,
    CASE WHEN {_plain_ts("ts")} THEN epoch_us(try_cast(ts AS TIMESTAMP)) END AS _a_tsu,
    try_cast(status AS INTEGER) AS _a_st,
    try_cast(duration_ms AS DOUBLE) AS _a_d
  FROM src
), classed AS (
  SELECT *,
    CASE
      WHEN {_plain_json()} THEN CASE WHEN {_window(since_us, until_us)} THEN 0 ELSE 3 END
      WHEN {_faithful()} THEN 1
      ELSE 2
    END AS _a_cls
  FROM typed
)"""
    return head + _grouped(step_us, plain, others, ", ".join(f"e_{f}" for f in FIELDS))


def text_query(path: Path, step_us: int, since_us: int | None, until_us: int | None) -> str:
    """The scan of one plain-text log (``TS LEVEL LOGGER [CID] MESSAGE``); other rows come
    back as their line. Plain: an access line ``HTTP <status> <METHOD> <route> Duration
    <n>ms`` with a status below 500, or a line without ``HTTP `` -- at a non-error level."""
    # p: the line split at single spaces; a double space, a tab, a stray character in a field
    # fails one of the checks below and the line goes the Python way
    access = (
        "len(p) = 10 AND p[5] = 'HTTP' AND length(p[6]) = 3 AND _a_st BETWEEN 100 AND 499"
        " AND regexp_full_match(p[7], '[A-Z]+') AND regexp_full_match(p[8], '[!-~]+')"
        r" AND p[9] = 'Duration' AND regexp_full_match(p[10], '[0-9]+(\.[0-9]+)?ms')"
    )
    head = f"""
WITH src AS (
  SELECT line FROM read_csv({_s(str(path))}, columns = {{'line': 'VARCHAR'}}, header = false,
    sep = '\\x01', quote = '', escape = '', auto_detect = false, strict_mode = false)
), typed AS (
  SELECT line, p,
    CASE WHEN {_plain_ts("p[1]")} THEN epoch_us(try_cast(p[1] AS TIMESTAMP)) END AS _a_tsu,
    try_cast(p[6] AS INTEGER) AS _a_st,
    upper(p[2]) AS _a_lvl
  FROM (SELECT line, string_split(line, ' ') AS p FROM src WHERE line IS NOT NULL)
), classed AS (
  SELECT *,
    CASE
      WHEN _a_tsu IS NOT NULL AND {_one_of("_a_lvl", _PLAIN_LEVELS)} AND len(p) >= 4
        AND regexp_full_match(p[3], '[!-~]+')
        AND (({access}) OR NOT contains(line, 'HTTP '))
      THEN CASE WHEN {_window(since_us, until_us)} THEN 0 ELSE 3 END
      ELSE 1
    END AS _a_cls
  FROM typed
)"""
    plain = """CASE WHEN _a_cls = 0 AND len(p) = 10 AND p[5] = 'HTTP' THEN _a_st END AS s,
    CASE WHEN _a_cls = 0 AND len(p) = 10 AND p[5] = 'HTTP' THEN p[7] END AS m,
    CASE WHEN _a_cls = 0 AND len(p) = 10 AND p[5] = 'HTTP' THEN p[8] END AS r,
    CASE WHEN _a_cls = 0 AND len(p) = 10 AND p[5] = 'HTTP'
      THEN CAST(rtrim(p[10], 'ms') AS DOUBLE) END AS d"""
    others = "CASE WHEN _a_cls = 1 THEN line END AS e_line"
    return head + _grouped(step_us, plain, others, "e_line")
