"""Text that came from a model, a server or a job file, made safe to show.

Streamlit reads Markdown almost everywhere: st.markdown, captions, alerts, headers, st.table
cells, progress texts, metric labels and widget labels (where even images are drawn). Text from
a store (answers, prompts, errors, judge reasons, custom ids, batch and model names) is never
passed there as it is:

- short names go through ``shown`` (plain when Markdown cannot act on them, else ``literal``:
  an inline code span, inside which nothing is interpreted);
- long text (answers, prompts, thinking, errors, reasons) is written with ``st.text``;
- the optional rendered view of an answer is ``rendered_html``: Markdown turned into HTML on the
  server with raw HTML escaped, and images and links replaced by their text and address, so the
  browser is given no tag that could load or open anything.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

# Plain words Markdown leaves alone: letters, digits, - _ . and single inner spaces.
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*(?: [A-Za-z0-9_.\-]+)*")
# ...except an ordered-list marker ("1." or "12. x"), typographic "--", and "www." autolinks.
_NOT_PLAIN = re.compile(r"^\d+\.(?: |$)|--|www\.", re.IGNORECASE)


def literal(text: str) -> str:
    """Text from a store or job file (a model or batch name) set in Markdown as inline code, so
    it shows as typed: no emphasis, links, images, colours, emoji or maths made of it."""
    flat = " ".join(text.split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", flat)), default=0) + 1)
    return f"{fence} {flat} {fence}"


def shown(text: object) -> str:
    """A name, id or short message as Markdown that shows it as typed: as it is when it holds
    nothing Markdown acts on (``MiniMax-M2.7``, ``job-0003``), else as ``literal``."""
    value = str(text)
    if _PLAIN.fullmatch(value) and not _NOT_PLAIN.search(value):
        return value
    return literal(value)


def joined(texts: Sequence[object]) -> str:
    """Several names, each ``shown``, separated by commas."""
    return ", ".join(shown(text) for text in texts)


def _markdown() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    parser.enable(["table", "strikethrough"])
    rules: Any = parser.renderer.rules  # type: ignore[attr-defined]
    rules["image"] = _image
    rules["link_open"] = _link_open
    rules["link_close"] = _link_close
    return parser


def _image(tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    alt = "".join(child.content for child in token.children or [])
    source = str(token.attrGet("src") or "")
    return f"<code>[image: {html.escape(alt)} ({html.escape(source)})]</code>"


def _link_open(tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
    token = tokens[idx]
    env.setdefault("links", []).append((str(token.attrGet("href") or ""), token.markup))
    return ""


def _link_close(tokens: Sequence[Token], idx: int, options: Any, env: dict[str, Any]) -> str:
    href, markup = env.get("links", [("", "")]).pop() if env.get("links") else ("", "")
    if markup == "autolink":  # <http://...>: its text is already the address
        return ""
    return f" <code>({html.escape(href)})</code>"


_PARSER = _markdown()


def rendered_html(text: str) -> str:
    """An answer's Markdown as HTML that loads and opens nothing: raw HTML is shown as text,
    each image as ``[image: ALT (ADDRESS)]`` and each link as its text and ``(ADDRESS)``."""
    body = _PARSER.render(text, {})
    return f'<div class="batchrun-rendered">{body}</div>'
