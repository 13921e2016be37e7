"""The message's markdown in the forms channels read: with its links, as plain text (SMS, voice,
the text part of an email), as Slack mrkdwn, as HTML (the email body), cut to a byte budget.

Messages use a small dialect: lines (a single newline is a line break), ``- `` list items,
``#`` headings, ``**bold**``, ```code```, ``[label](url)`` links and ``---`` rules. Nothing more is
needed, so nothing more is parsed.
"""

from __future__ import annotations

import html
import re

LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
CODE = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
TAG = re.compile(r"</?[a-zA-Z][^>\n]*>")  # <font color=...> and the like, which some robots accept
SAFE_URL = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)


def link_line(links) -> str:
    """The message's links as one markdown line: ``[label](url) | [label](url)``."""
    return " | ".join(f"[{label}]({url})" for label, url in links)


def with_links(text: str, links) -> str:
    """The text and, below it, its links (the acknowledge link, the runbook) as markdown links."""
    return f"{text}\n\n{link_line(links)}" if links else text


def plain(text: str) -> str:
    """Markdown as plain text: ``[label](url)`` -> ``label url``; emphasis, code marks, headings'
    hashes and tags dropped; list items kept."""
    out = []
    for line in text.splitlines():
        m = HEADING.match(line)
        line = m.group(2) if m else line
        line = LINK.sub(lambda x: f"{x.group(1)} {x.group(2)}", line)
        line = BOLD.sub(lambda x: x.group(1) or x.group(2), line)
        line = CODE.sub(r"\1", TAG.sub("", line))
        out.append("" if line.strip() == "---" else line.rstrip())
    return "\n".join(out).strip()


def slack_mrkdwn(text: str) -> str:
    """Markdown as Slack's mrkdwn: ``&<>`` escaped, ``<url|label>`` links, ``*bold*``, headings bold."""
    out = []
    for line in text.splitlines():
        m = HEADING.match(line)
        line = f"**{m.group(2)}**" if m else line
        links: list[str] = []

        def keep(x, links=links):  # a link is escaped on its own, then put back
            links.append(f"<{_slack_escape(x.group(2))}|{_slack_escape(x.group(1))}>")
            return f"\x00{len(links) - 1}\x00"

        line = _slack_escape(TAG.sub("", LINK.sub(keep, line)))
        line = BOLD.sub(lambda x: f"*{x.group(1) or x.group(2)}*", line)
        out.append(re.sub("\x00(\\d+)\x00", lambda x, links=links: links[int(x.group(1))], line))
    return "\n".join(out)


def _slack_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_html(text: str) -> str:
    """Markdown as HTML, everything escaped first: headings, paragraphs with line breaks, ``- `` lists,
    bold, code, ``---`` rules and links (http, https and mailto only; others stay text)."""
    blocks: list[str] = []
    para: list[str] = []
    items: list[str] = []

    def flush():
        if para:
            blocks.append("<p>" + "<br>\n".join(para) + "</p>")
            para.clear()
        if items:
            blocks.append("<ul>\n" + "\n".join(f"<li>{i}</li>" for i in items) + "\n</ul>")
            items.clear()

    for raw in text.splitlines():
        line = raw.rstrip()
        heading = HEADING.match(line)
        if not line.strip():
            flush()
        elif line.strip() == "---":
            flush()
            blocks.append("<hr>")
        elif heading:
            flush()
            level = len(heading.group(1))
            blocks.append(f"<h{level}>{_inline_html(heading.group(2))}</h{level}>")
        elif line.lstrip().startswith(("- ", "* ")):
            if para:
                flush()
            items.append(_inline_html(line.lstrip()[2:]))
        else:
            if items:
                flush()
            para.append(_inline_html(line))
    flush()
    return "\n".join(blocks)


def _inline_html(line: str) -> str:
    links: list[str] = []

    def keep(x):
        label, url = html.escape(x.group(1)), x.group(2)
        if not SAFE_URL.match(url):
            return x.group(0)
        links.append(f'<a href="{html.escape(url, quote=True)}">{label}</a>')
        return f"\x00{len(links) - 1}\x00"

    out = html.escape(TAG.sub("", LINK.sub(keep, line)), quote=False)
    out = BOLD.sub(lambda x: f"<strong>{x.group(1) or x.group(2)}</strong>", out)
    out = CODE.sub(r"<code>\1</code>", out)
    return re.sub("\x00(\\d+)\x00", lambda x: links[int(x.group(1))], out)


def cut(text: str, max_chars: int, marker: str = "…") -> str:
    return text if len(text) <= max_chars else text[: max(max_chars - len(marker), 0)] + marker


def cut_utf8(text: str, max_bytes: int, marker: str = "…") -> str:
    """``text`` in at most ``max_bytes`` of UTF-8, cut at a character, ending in ``marker`` when cut."""
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    room = max_bytes - len(marker.encode())
    return data[:room].decode(errors="ignore") + marker
