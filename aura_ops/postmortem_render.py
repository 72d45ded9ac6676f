"""One document, two renderings: the post-mortem as markdown (to edit) and as HTML (to read).

A document is a list of blocks, each ``(kind, content)``::

    ("h1" | "h2" | "h3" | "p" | "note", parts)   # parts: text, Link, Strong or a list of them
    ("kv", [(key, text or Link), ...])            # "- **Date**: 2026-11-23"
    ("bullets" | "numbered", [item, ...])        # item: parts, or (parts, [sub-items][, kind])
    ("table", (headers, rows))                    # cells are text or Link
    ("code", text)                                # fenced / <pre>
    ("html", markup)                              # HTML rendering only (already escaped)
    ("image", (png_base64, alt, href))            # <img> in HTML; ![alt](href) in markdown

Everything that comes from evidence (summaries, labels, log lines) is data: HTML escapes it,
markdown escapes the characters that would turn it into markup (``|``, ``*``, ``_``, ``#``,
backticks, brackets, and ``<`` where it could open a tag), so a hostile label renders as text
in both.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Callable, Sequence
from typing import Any

from aura_ops.display import png_data_uri

__all__ = ["Block", "Link", "Strong", "map_text", "render_html", "render_markdown"]


@dataclasses.dataclass(frozen=True)
class Link:
    """A link: ``text`` to a relative path or URL inside the bundle."""

    text: str
    href: str


@dataclasses.dataclass(frozen=True)
class Strong:
    """Bold text."""

    text: str


Block = tuple[str, Any]
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#])")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # what could open an HTML tag or comment
_esc = html.escape


def _map(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, Link):
        return Link(fn(value.text), value.href)
    if isinstance(value, Strong):
        return Strong(fn(value.text))
    if isinstance(value, tuple):
        return tuple(_map(v, fn) for v in value)
    if isinstance(value, list):
        return [_map(v, fn) for v in value]
    return value


def map_text(blocks: Sequence[Block], fn: Callable[[str], str]) -> list[Block]:
    """A copy of ``blocks`` with ``fn`` applied to every text (a redactor's ``text``); images
    are left alone."""
    return [(kind, c if kind == "image" else _map(c, fn)) for kind, c in blocks]


def _md(text: Any) -> str:
    """Plain text safe inside markdown: one line, markup characters escaped."""
    s = re.sub(r"\s+", " ", str(text))
    return _TAG_START.sub("&lt;", _MD_SPECIAL.sub(r"\\\1", s))


def _md_href(href: str) -> str:
    return href.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _md_part(p: Any) -> str:
    if isinstance(p, Link):
        return f"[{_md(p.text)}]({_md_href(p.href)})"
    if isinstance(p, Strong):
        return f"**{_md(p.text)}**"
    return _md(p)


def _md_inline(parts: Any) -> str:
    return "".join(_md_part(p) for p in (parts if isinstance(parts, list) else [parts]))


def _html_part(p: Any) -> str:
    if isinstance(p, Link):
        return f'<a href="{_esc(p.href)}">{_esc(p.text)}</a>'
    if isinstance(p, Strong):
        return f"<b>{_esc(p.text)}</b>"
    return _esc(str(p))


def _html_inline(parts: Any) -> str:
    return "".join(_html_part(p) for p in (parts if isinstance(parts, list) else [parts]))


def _item(item: Any) -> tuple[Any, Sequence[Any], str]:
    """(parts, sub-items, their kind) of a list item: parts, (parts, subs) or
    (parts, subs, "numbered")."""
    if isinstance(item, tuple):
        return item[0], item[1], item[2] if len(item) > 2 else "bullets"
    return item, (), "bullets"


def _md_items(kind: str, items: Sequence[Any], indent: str = "") -> list[str]:
    out = []
    for n, item in enumerate(items, 1):
        parts, subs, sub_kind = _item(item)
        out.append(f"{indent}{'-' if kind == 'bullets' else f'{n}.'} {_md_inline(parts)}")
        out += _md_items(sub_kind, subs, indent + "   ")
    return out


def _html_items(kind: str, items: Sequence[Any]) -> str:
    tag = "ul" if kind == "bullets" else "ol"
    lis = []
    for item in items:
        parts, subs, sub_kind = _item(item)
        lis.append(f"<li>{_html_inline(parts)}{_html_items(sub_kind, subs) if subs else ''}</li>")
    return f"<{tag}>{''.join(lis)}</{tag}>"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(_md(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_md_inline(c) for c in row) + " |" for row in rows]
    return out


def render_markdown(blocks: Sequence[Block]) -> str:
    """The document as GitHub-flavoured markdown."""
    out: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            out += ["#" * int(kind[1]) + " " + _md_inline(content), ""]
        elif kind == "p":
            out += [_md_inline(content), ""]
        elif kind == "note":
            out += [f"_{_md_inline(content)}_", ""]
        elif kind == "kv":
            out += [f"- **{_md(k)}**: {_md_inline(v)}" for k, v in content] + [""]
        elif kind in ("bullets", "numbered"):
            out += [*_md_items(kind, content), ""]
        elif kind == "table":
            out += [*_md_table(*content), ""]
        elif kind == "code":
            fence = "````" if "```" in content else "```"
            out += [fence, content.rstrip("\n"), fence, ""]
        elif kind == "image" and len(content) > 2:  # (png, alt, href of the PNG file)
            out += [f"![{_md(content[1])}]({_md_href(content[2])})", ""]
    return "\n".join(out).rstrip() + "\n"


_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:1100px;
margin:24px auto;padding:0 20px;color:#1f2328;line-height:1.45}
h1{font-size:23px} h2{font-size:18px;border-bottom:1px solid #d0d7de;padding-bottom:4px;
margin-top:30px} h3{font-size:15px} table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border:1px solid #d0d7de;padding:3px 8px;vertical-align:top;text-align:left}
th{background:#f6f8fa} pre{background:#f6f8fa;padding:10px;border-radius:4px;
white-space:pre-wrap;font-size:12.5px} .note{color:#57606a;font-style:italic}
img.plot{max-width:100%} details{margin:4px 0 10px}
"""


def _html_block(kind: str, content: Any) -> str:
    if kind in ("h1", "h2", "h3"):
        return f"<{kind}>{_html_inline(content)}</{kind}>"
    if kind == "p":
        return f"<p>{_html_inline(content)}</p>"
    if kind == "note":
        return f'<p class="note">{_html_inline(content)}</p>'
    if kind == "kv":
        items = "".join(f"<li><b>{_esc(k)}</b>: {_html_inline(v)}</li>" for k, v in content)
        return f"<ul>{items}</ul>"
    if kind in ("bullets", "numbered"):
        return _html_items(kind, content)
    if kind == "table":
        headers, rows = content
        head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{_html_inline(c)}</td>" for c in row) + "</tr>" for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if kind == "code":
        return f"<pre>{_esc(content)}</pre>"
    if kind == "html":
        return str(content)
    if kind == "image":
        return f'<img class="plot" alt="{_esc(content[1])}" src="{png_data_uri(content[0])}">'
    raise ValueError(f"unknown block kind {kind!r}")


def render_html(blocks: Sequence[Block], *, title: str) -> str:
    """The document as one self-contained HTML page (no external assets)."""
    body = "\n".join(_html_block(kind, content) for kind, content in blocks)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )
