"""The SQL of the DuckDB log engine (:mod:`aura_ops.logs_duckdb`): one scan per file.

Every row is put in a class: ``0`` *exact* (aggregated in SQL, errors included), ``1``
*other* (its fields -- JSON -- or its text -- plain-text logs -- go back to the Python
aggregator), ``2`` *unfaithful* (JSON only: a value whose text DuckDB gives differently from
what Python reads, e.g. a numeric level; the whole file is then read by Python), ``3`` exact
but outside the window. A row is exact only when the Python normaliser
(:func:`aura_ops.logs_formats.finish`) is known to read it the same way: anything unusual goes
the Python way.

Error rows are normalised in SQL with the Python path's own regular expressions (error type
from the message, numbers masked), on ASCII text only: there RE2 and Python's ``re`` agree
(``\\b``, ``\\d``, ``\\w``, ``\\s`` are ASCII classes in both; both take the leftmost match, and
among those the one a backtracking engine would find). Non-ASCII errors go the Python way.

One query (one scan, its rows materialised once, then four groupings each over the rows it
needs, as ``GROUPING SETS`` would give them) returns counters per time bucket and endpoint, a
histogram of exact durations per endpoint, the errors per type and correlation ID, and the
other rows with their multiplicity. Costly checks have cheap equivalents where exact: the
usual timestamp shape is one fixed-width pattern, text fields are checked by one regular
expression together, text durations are cast once per distinct value.
"""

from __future__ import annotations

from pathlib import Path

from .logs_formats import _LEVELS, ALIASES

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
#: Levels (upper-cased) that are never an error for Python.
_PLAIN_LEVELS = ("INFO", "DEBUG", "WARNING", "WARN", "TRACE", "NOTICE", "INFORMATION")
#: Every level word the SQL path normalises itself (as ``_norm_level`` does).
_KNOWN_LEVELS = tuple(sorted({*_PLAIN_LEVELS, *_LEVELS, *_LEVELS.values(), "ERROR"}))
#: The regular expressions of :mod:`aura_ops.logs_formats` / :mod:`aura_ops.logs_stats`.
_EXC = r"\b([A-Z][\w.]*(?:Error|Exception|Exceeded|Timeout|Failure|Fault|Refused))\b"
_MASK = r"0x[0-9a-fA-F]+|\b[0-9a-fA-F-]{8,}\b|\d+"
_TEXT_RE = (
    r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S*)\s+([A-Za-z]+)\s+(\S+)"
    r"\s+(?:\[([^\]]*)\]\s*)?(.*)$"
)
_HTTP_RE = (
    r"HTTP (\d{3}) ([A-Z]+) (\S+)(?: ([A-Za-z_][\w.]*): (.*?))?"
    r"(?: Duration (\d+(?:\.\d+)?)ms)?\s*$"
)


def _one_of(expr: str, words: tuple[str, ...]) -> str:
    """``expr`` equals one of ``words`` (an OR chain: DuckDB plans ``IN`` lists as joins)."""
    return "(" + " OR ".join(f"{expr} = {_s(w)}" for w in words) + ")"


_LEVEL_ALIASES = ("severity", "lvl", "levelname", "log.level")
_STATUS_ALIASES = ("status_code", "statusCode", "http_status", "msg", "@message")
_DURATION_ALIASES = ("latency_ms", "elapsed_ms", "response_time_ms")
_MESSAGE_ALIASES = ("msg", "@message")
_CID_ALIASES = (
    "correlationId",
    "correlation-id",
    "x_correlation_id",
    "request_id",
    "requestId",
)
_ERROR_TYPE_ALIASES = ("exc_type", "exception_type", "errorType")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _s(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _norm_level(upper: str) -> str:
    """The SQL of ``_norm_level`` for an upper-cased level word."""
    whens = " ".join(f"WHEN {_s(k)} THEN {_s(v)}" for k, v in sorted(_LEVELS.items()))
    return f"(CASE {upper} {whens} ELSE {upper} END)"


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


def _ascii(expr: str) -> str:
    """``expr`` is NULL or ASCII (bytes = characters), where RE2 and ``re`` agree."""
    return f"({expr} IS NULL OR strlen({expr}) = length({expr}))"


def _exact_json() -> str:
    """A JSON row whose summary Python would compute exactly as SQL does: the values a row is
    counted by are checked, aliases only where they would count; error rows also need their
    message, correlation ID and error type as plain (ASCII) text."""
    return " AND ".join(
        [
            "_a_tsu IS NOT NULL",
            f"(level IS NULL OR {_one_of('level', _KNOWN_LEVELS)}"
            f" OR {_one_of('upper(level)', _KNOWN_LEVELS)})",
            "(status IS NULL OR (length(status) = 3 AND _a_st BETWEEN 100 AND 999))",
            # plain decimals only (stricter than the unfaithful check below, and cheaper)
            r"(duration_ms IS NULL OR (_a_d IS NOT NULL"
            r" AND regexp_full_match(duration_ms, '-?[0-9]{1,20}(\.[0-9]{1,20})?')))",
            *(_plain_text(c) for c in ("method", "route", "path")),
            f"(route IS NOT NULL OR path IS NULL OR NOT {_numeric_start('path')})",
            _absent("level", _LEVEL_ALIASES),
            _absent("status", _STATUS_ALIASES),
            _absent("duration_ms", _DURATION_ALIASES),
            _absent("method", ("http_method",)),
            _absent("route", ("endpoint",)),
            "NOT (status IS NULL AND message IS NOT NULL AND contains(message, 'HTTP '))",
            f"(status IS NOT NULL OR {_plain_text('message')})",
            "(NOT _a_err OR ("
            + " AND ".join(
                [
                    *(_plain_text(c) for c in ("message", "correlation_id", "error_type")),
                    _absent("message", _MESSAGE_ALIASES),
                    _absent("correlation_id", _CID_ALIASES),
                    _absent("error_type", _ERROR_TYPE_ALIASES),
                    _ascii("message"),
                ]
            )
            + "))",
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


def _tsu(col: str) -> str:
    """Microseconds since the epoch of a :func:`_plain_ts` timestamp, else NULL. The usual
    shape (``2026-11-23T10:00:00.123Z``) is recognised by one fixed-width pattern first."""
    c = col
    fast = f"{c} LIKE '____-__-__T__:__:__.___Z' AND {c} >= '1970' AND {c}[12:13] < '24'"
    cast = f"epoch_us(try_cast({c} AS TIMESTAMP))"
    return f"CASE WHEN {fast} THEN {cast} WHEN {_plain_ts(c)} THEN {cast} END"


def _window(since_us: int | None, until_us: int | None) -> str:
    bounds = [f"_a_tsu >= {since_us}"] * (since_us is not None)
    bounds += [f"_a_tsu < {until_us}"] * (until_us is not None)
    return " AND ".join(bounds) or "TRUE"


_AGGS = ("n", "requests", "c5xx", "c4xx", "c429", "cerr", "tmin", "tmax")
_KEYS = ("_a_cls", "b", "m", "r", "d", "k", "routed", "kind", "cid")


def _branch(flags: str, keys: tuple[str, ...], aggs: dict[str, str], where: str, others: str,
            d: str = "d") -> str:  # fmt: skip
    """One grouping of the ``rows`` CTE with the columns of all of them (NULL where unused):
    ``flags`` the ``GROUPING()`` bits ``gb, gd, gk, ge``, ``keys`` its keys (``e``: the other
    rows' columns), ``d`` the duration's expression."""
    bits = [f"{v} AS {n}" for v, n in zip(flags, ("gb", "gd", "gk", "ge"), strict=True)]
    cols = [(d if k == "d" else k) if k in keys else f"NULL AS {k}" for k in _KEYS]
    cols[4] += " AS d" * ("d" in keys)
    cols += [o if "e" in keys else f"NULL AS {o}" for o in others.split(", ")]
    cols += [f"{aggs.get(a, 'NULL')} AS {a}" for a in _AGGS]
    group = [k for k in keys if k != "e"] + others.split(", ") * ("e" in keys)
    return f"SELECT {', '.join(bits + cols)} FROM rows WHERE {where} GROUP BY {', '.join(group)}"


def _branches(others: str, d: str) -> str:
    """The four groupings (what ``GROUPING SETS`` would give), each over the rows it needs:
    per bucket and endpoint, durations per endpoint, errors, the other rows (with the
    unfaithful ones, which send the whole file to Python)."""
    full = {
        "n": "count(*)",
        "requests": "count(s)",
        "c5xx": "count(*) FILTER (WHERE s >= 500)",
        "c4xx": "count(*) FILTER (WHERE s >= 400 AND s < 500)",
        "c429": "count(*) FILTER (WHERE s = 429)",
        "cerr": "count(*) FILTER (WHERE el)",
        "tmin": "min(t)",
        "tmax": "max(t)",
    }
    times = {"n": "count(*)", "tmin": "min(t)", "tmax": "max(t)"}
    error_keys = ("_a_cls", "m", "r", "k", "routed", "kind", "cid")
    return "\nUNION ALL ".join(
        [
            _branch("0111", ("_a_cls", "b", "m", "r"), full, "_a_cls = 0", others),
            _branch("1011", ("_a_cls", "m", "r", "d"), {"n": "count(*)"},
                    "_a_cls = 0 AND d IS NOT NULL", others, d),
            _branch("1101", error_keys, times, "_a_cls = 0 AND k IS NOT NULL", others),
            _branch("1110", ("_a_cls", "e"), {"n": "count(*)"}, "_a_cls IN (1, 2)", others),
        ]
    )  # fmt: skip


def _grouped(step_us: int, other_cols: str, other_keys: str, d: str = "d") -> str:
    """The common tail. ``classed`` gives, for exact rows: ``_a_tsu`` (µs), ``_a_st``
    (status), ``_a_d`` (duration), ``_a_lvl`` (normalised level), ``_a_err`` (an error row),
    ``_a_m``/``_a_r`` (method, route: NULL when absent), ``_a_msg``, ``_a_cid`` and
    ``_a_et0`` (the error type the record carries)."""
    exact = "_a_cls = 0"
    error = f"{exact} AND _a_err"
    return f""", prep AS (
  SELECT *,
    CASE WHEN {error} THEN CASE WHEN _a_et0 IS NOT NULL THEN _a_et0
      WHEN _a_msg <> '' THEN nullif(regexp_extract(_a_msg, {_s(_EXC)}, 1), '') END END AS _a_et
  FROM classed
), rows AS MATERIALIZED (
  SELECT _a_cls,
    CASE WHEN {exact} THEN _a_tsu // {step_us} END AS b,
    CASE WHEN {exact} THEN _a_tsu END AS t,
    CASE WHEN {exact} THEN _a_st END AS s,
    CASE WHEN {exact} THEN coalesce(nullif(_a_m, ''), '?') END AS m,
    CASE WHEN {exact} THEN coalesce(nullif(_a_r, ''), '?') END AS r,
    CASE WHEN {exact} THEN _a_d END AS d,
    CASE WHEN {exact} THEN coalesce(_a_lvl = 'ERROR' OR _a_lvl = 'CRITICAL', FALSE) END AS el,
    CASE WHEN {error} THEN CASE WHEN _a_et <> '' THEN _a_et
      WHEN _a_msg IS NULL THEN '(no message)'
      ELSE left(regexp_replace(_a_msg, {_s(_MASK)}, 'N', 'g'), 80) END END AS k,
    CASE WHEN {error} THEN _a_r IS NOT NULL END AS routed,
    CASE WHEN {exact} AND _a_st >= 500 THEN
      CASE WHEN _a_et <> '' THEN _a_et ELSE 'HTTP ' || _a_st END END AS kind,
    CASE WHEN {error} THEN _a_cid END AS cid,
    {other_cols}
  FROM prep
)
{_branches(other_keys, d)}
"""


def json_query(path: Path, step_us: int, since_us: int | None, until_us: int | None) -> str:
    """The scan of one JSON-lines file; other rows come back as a list of the :data:`FIELDS`."""
    names = list(FIELDS) + sorted(ALIASES)
    columns = "{" + ", ".join(f"{_s(n)}: 'VARCHAR'" for n in names) + "}"
    # one list column (NULL on most rows: narrower to materialise than a column per field)
    others = f"CASE WHEN _a_cls = 1 THEN [{', '.join(map(_q, FIELDS))}] END AS e_rec"
    canonical = _one_of("level", ("INFO", "ERROR", "WARNING", "DEBUG", "CRITICAL"))
    lvl = f"""CASE WHEN {canonical} THEN level
      WHEN level IS NULL THEN CASE WHEN _a_st >= 500 THEN 'ERROR'
      WHEN _a_st >= 400 THEN 'WARNING' WHEN _a_st IS NOT NULL THEN 'INFO' END
      ELSE {_norm_level("upper(level)")} END"""
    head = f"""
WITH src AS (
  SELECT * FROM read_json({_s(str(path))}, format = 'newline_delimited', records = 'true',
                          columns = {columns})
), typed AS (
  SELECT *,
    {_tsu("ts")} AS _a_tsu,
    try_cast(status AS INTEGER) AS _a_st,
    try_cast(duration_ms AS DOUBLE) AS _a_d
  FROM src
), leveled AS (
  SELECT *, {lvl} AS _a_lvl FROM typed
), erred AS (
  SELECT *, coalesce(_a_lvl = 'ERROR' OR _a_lvl = 'CRITICAL' OR _a_st >= 500, FALSE) AS _a_err
  FROM leveled
), classed AS (
  SELECT *,
    CASE
      WHEN {_exact_json()} THEN CASE WHEN {_window(since_us, until_us)} THEN 0 ELSE 3 END
      WHEN {_faithful()} THEN 1
      ELSE 2
    END AS _a_cls,
    method AS _a_m,
    CASE WHEN route IS NULL THEN split_part(path, '?', 1) ELSE route END AS _a_r,
    message AS _a_msg, correlation_id AS _a_cid, error_type AS _a_et0
  FROM erred
)"""
    return head + _grouped(step_us, others, "e_rec")


def text_query(path: Path, step_us: int, since_us: int | None, until_us: int | None) -> str:
    """The scan of one plain-text log (``TS LEVEL LOGGER [CID] MESSAGE``); other rows come
    back as their line.

    Two exact ways: the common lines split at single spaces (an access line ``HTTP <status>
    <METHOD> <route> Duration <n>ms`` with a status below 500, or a line without ``HTTP ``, at
    a non-error level), else the Python path's regular expressions on printable-ASCII lines
    (errors, tracebacks' first lines, odd spacing). Anything else goes the Python way."""
    # f1..f10: the line split at single spaces; a double space, a tab, a stray character in a
    # field fails one of the checks below and the line goes the regex way
    access = (
        "np = 10 AND f5 = 'HTTP' AND f9 = 'Duration' AND _a_st0 BETWEEN 100 AND 499"
        " AND f4 ^@ '[' AND strpos(f4, ']') = length(f4)"  # the [cid] regex, cheaper
        # the logger, status, method, route and duration: one regex (fields have no spaces)
        " AND regexp_full_match(concat(f3, ' ', f6, ' ', f7, ' ', f8, ' ', f10),"
        r" '[!-~]+ [0-9]{3} [A-Z]+ [!-~]+ [0-9]{1,20}(\.[0-9]{1,10})?ms')"
    )
    split_plain = f"""_a_tsu0 IS NOT NULL AND {_one_of("_a_u", _PLAIN_LEVELS)}
        AND strlen(f2) = length(f2) AND (({access}) OR (np >= 4
          AND NOT contains(line, 'HTTP ') AND regexp_full_match(f3, '[!-~]+')))"""
    is_access = "np = 10 AND f5 = 'HTTP'"
    head = f"""
WITH src AS (
  SELECT line FROM read_csv({_s(str(path))}, columns = {{'line': 'VARCHAR'}}, header = false,
    sep = '\\x01', quote = '', escape = '', auto_detect = false, strict_mode = false)
), fields AS (
  SELECT line, len(p) AS np, p[1] AS f1, p[2] AS f2, p[3] AS f3, p[4] AS f4, p[5] AS f5,
    p[6] AS f6, p[7] AS f7, p[8] AS f8, p[9] AS f9, p[10] AS f10
  FROM (SELECT line, string_split(line, ' ') AS p FROM src WHERE line IS NOT NULL)
), split AS (
  SELECT *,
    {_tsu("f1")} AS _a_tsu0,
    try_cast(f6 AS INTEGER) AS _a_st0,
    upper(f2) AS _a_u
  FROM fields
), way AS (
  SELECT *, CASE WHEN {split_plain} THEN 0
    WHEN regexp_full_match(line, '[ -~]*') THEN 5 ELSE 1 END AS _a_way
  FROM split
), rx AS (
  SELECT *, CASE WHEN _a_way = 5 THEN regexp_extract(line, {_s(_TEXT_RE)},
    ['ts', 'level', 'logger', 'cid', 'msg']) END AS x
  FROM way
), hx AS (
  SELECT *, CASE WHEN _a_way = 5 AND contains(x.msg, 'HTTP ') THEN regexp_extract(x.msg,
    {_s(_HTTP_RE)}, ['status', 'method', 'route', 'et', 'err', 'dur']) END AS h
  FROM rx
), typed AS (
  SELECT line,
    CASE WHEN _a_way = 0 THEN _a_tsu0 WHEN _a_way = 5 AND x.ts <> '' THEN {_tsu("x.ts")}
      END AS _a_tsu,
    CASE WHEN _a_way = 0 THEN CASE WHEN {is_access} THEN _a_st0 END
      WHEN h.status <> '' THEN try_cast(h.status AS INTEGER) END AS _a_st,
    CASE WHEN _a_way = 0 THEN CASE WHEN {is_access} THEN f10 END
      WHEN h.dur <> '' THEN h.dur END AS _a_d,
    coalesce(length(h.dur) > 30, FALSE) AS _a_long,
    CASE WHEN _a_way = 0 THEN _a_u WHEN _a_way = 5 THEN {_norm_level("upper(x.level)")}
      END AS _a_lvl,
    CASE WHEN _a_way = 0 THEN CASE WHEN {is_access} THEN f7 END
      WHEN h.method <> '' THEN h.method END AS _a_m,
    CASE WHEN _a_way = 0 THEN CASE WHEN {is_access} THEN f8 END
      WHEN h.route <> '' THEN h.route END AS _a_r,
    x.msg AS _a_msg, x.cid AS _a_cid,
    CASE WHEN h.et <> '' THEN h.et END AS _a_et0,
    _a_way
  FROM hx
), classed AS (
  SELECT *,
    CASE WHEN _a_way = 1 OR _a_tsu IS NULL OR _a_long THEN 1
      WHEN {_window(since_us, until_us)} THEN 0 ELSE 3 END AS _a_cls,
    coalesce(_a_lvl = 'ERROR' OR _a_lvl = 'CRITICAL' OR _a_st >= 500, FALSE) AS _a_err
  FROM typed
)"""
    others = "CASE WHEN _a_cls = 1 THEN line END AS e_line"
    # the duration stays text (``12.5ms`` or ``12.5``) until grouped: cast once per value
    return head + _grouped(step_us, others, "e_line", "try_cast(rtrim(d, 'ms') AS DOUBLE)")
