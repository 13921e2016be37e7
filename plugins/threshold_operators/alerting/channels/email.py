"""Email through an Airflow SMTP connection (``apache-airflow-providers-smtp``).

The Airflow connection (type ``smtp``): host and port of the relay, login and password when it
asks for them, and in extra ``from_email`` (required), ``disable_ssl`` / ``disable_tls`` (the hook
defaults to SMTPS; set ``disable_ssl: true`` for STARTTLS on 587, both for a plain relay),
``timeout`` and ``retry_limit`` (the hook's own reconnect attempts). ``SmtpHook`` reads the
connection, connects and logs in; the message itself is built here, because the hook's
``send_email_smtp`` sends HTML only and this sends both: ``multipart/alternative`` with a plain
text part and an HTML part rendered from the markdown (everything escaped), the links below the
text. A message that lists alerts is laid out as a table, one row per entity the message keeps
(``messages.FORM_ITEMS``, the top 50; the rest by a "+N more" row linking to the alerts page):
severity, who, what was measured and what else to know, and its acknowledge link; the text part
lists the same entities. Recipients are ``message.emails``; the subject is the title.

Failures: no recipients, no sender address, 5xx replies (a refused address, a failed login) are
final; a refused or dropped connection, a timeout and 4xx replies (greylisting, a full mailbox,
"try again later") are retried. When the relay accepts some recipients and refuses others, the
message counts as sent (sending again would duplicate it for the others) and the refusals are
named in the result.
"""

from __future__ import annotations

import html
import smtplib
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from threshold_operators.alerting.channels.base import Message, SendResult, lookup_connection
from threshold_operators.alerting.channels.markdown import SAFE_URL, link_line, plain, to_html, with_links
from threshold_operators.alerting.messages import more_line

SEVERITY_COLOUR = {"red": "#d93025", "yellow": "#f29900", "blue": "#1a73e8"}


def _scrub(text: str, secrets) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


class EmailSender:
    """``connect()`` returns a connected, logged-in ``smtplib.SMTP`` (``from_connection``: through
    ``SmtpHook``); one connection per message, closed after it."""

    def __init__(self, connect: Callable[[], smtplib.SMTP], from_email: str | None, *, name: str = "email",
                 clock: Callable[[], float] = time.time, secrets: tuple[str, ...] = (), timeout: float = 30.0,
                 retry_limit: int = 5):
        self.name, self.from_email = name, from_email
        self._connect, self._clock, self._secrets = connect, clock, secrets
        self._timeout, self._retry_limit = timeout, retry_limit

    def worst_case_seconds(self, message: Message | None = None) -> float:
        """The hook's connection attempts (``retry_limit`` x ``timeout``), then the session's
        commands (MAIL, RCPT per recipient, DATA, QUIT), each up to ``timeout``."""
        recipients = len(message.emails) if message is not None else 10
        return self._timeout * (self._retry_limit + 3 + max(recipients, 1))

    @classmethod
    def from_connection(cls, conn_id: str, **kwargs) -> EmailSender:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        conn = lookup_connection(conn_id)  # fails early when the connection is not defined
        extra = conn.extra_dejson or {}

        def connect() -> smtplib.SMTP:
            hook = SmtpHook(smtp_conn_id=conn_id).get_conn()  # connects, STARTTLS, logs in
            return hook._smtp_client  # noqa: SLF001 - the hook exposes its client only to send HTML-only mail

        kwargs.setdefault("name", conn_id)
        kwargs.setdefault("secrets", (conn.password or "",))
        kwargs.setdefault("timeout", float(extra.get("timeout", 30)))  # SmtpHook's defaults
        kwargs.setdefault("retry_limit", int(extra.get("retry_limit", 5)))
        return cls(connect, extra.get("from_email") or (conn.login if "@" in (conn.login or "") else None), **kwargs)

    def payload(self, message: Message) -> EmailMessage:
        text = with_links(_full_text(message), message.links)
        if message.mentions:
            text += "\n\n" + " ".join(f"@{m}" for m in message.mentions)
        colour = SEVERITY_COLOUR.get(message.severity or "", "#188038")
        html_body = (f'<!doctype html>\n<html><body style="font-family:sans-serif">\n'
                     f'<div style="border-left:4px solid {colour};padding-left:12px">\n{_html(message, text)}\n</div>\n'
                     f"</body></html>\n")
        msg = EmailMessage()
        msg["Subject"] = message.title
        msg["From"] = self.from_email or ""
        msg["To"] = ", ".join(message.emails)
        msg["Date"] = formatdate(self._clock(), localtime=False)
        msg["Message-ID"] = make_msgid(domain=(self.from_email or "storefence.local").rpartition("@")[2])
        if message.severity:
            msg["X-Storefence-Severity"] = message.severity
        body = plain(text)
        msg.set_content(body + "\n" if message.parts else f"{message.title}\n\n{body}\n")  # a form opens with its head
        msg.add_alternative(html_body, subtype="html")
        return msg

    def send(self, message: Message) -> SendResult:
        if not message.emails:
            return SendResult(False, False, "no email recipients: the message has no addresses (people.*.email)")
        if not self.from_email:
            return SendResult(False, False, "no sender address: set extra.from_email on the SMTP connection")
        try:
            client = self._connect()
        except smtplib.SMTPResponseException as exc:
            return self._reply_failure(exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPException) as exc:  # refused, timed out, disconnected
            return SendResult(False, True, f"cannot reach the SMTP server: {type(exc).__name__}")
        except Exception as exc:  # noqa: BLE001 - the hook wraps a lost server in AirflowException
            return SendResult(False, True, _scrub(f"{type(exc).__name__}: {str(exc)[:200]}", self._secrets))
        try:
            refused = client.send_message(self.payload(message), self.from_email, list(message.emails))
        except smtplib.SMTPRecipientsRefused as exc:  # every recipient refused
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{addr}: {code} {_text(err)}" for addr, (code, err) in exc.recipients.items())
            return SendResult(False, any(400 <= c < 500 for c in codes), _scrub(f"recipients refused: {detail}"[:300],
                                                                                self._secrets))
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, ...
            return self._reply_failure(exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPException) as exc:
            return SendResult(False, True, f"SMTP session lost: {type(exc).__name__}")
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
        if refused:
            detail = "; ".join(f"{addr}: {code} {_text(err)}" for addr, (code, err) in refused.items())
            return SendResult(True, False, f"sent; some recipients refused: {detail}"[:300])
        return SendResult.success()

    def _reply_failure(self, code: int, error) -> SendResult:
        return SendResult(False, 400 <= code < 500, _scrub(f"SMTP {code}: {_text(error)[:200]}", self._secrets))


def _full_text(message: Message) -> str:
    """The text part: every entity each form keeps (an email has room for them)."""
    from threshold_operators.alerting.messages import markdown

    if not message.parts:
        return message.text
    return "\n\n---\n\n".join(markdown(p, len(p["items"])) if isinstance(p, dict) else p for p in message.parts)


ROW_COLOUR = {"red": "#fce8e6", "yellow": "#fef7e0", "blue": "#e8f0fe"}
CELL = 'style="border:1px solid #dadce0;padding:4px 8px;text-align:left;vertical-align:top"'


def _html(message: Message, text: str) -> str:
    """The HTML body: each form as its head, summary, a table of its entities and the rest as text;
    a message without forms as its text."""
    if not message.parts:
        return to_html(text)
    blocks = []
    for part in message.parts:
        if not isinstance(part, dict):
            blocks.append(to_html(part))
            continue
        zh = part["lang"] == "zh"
        head = ("级别", "对象", "情况", "确认") if zh else ("Severity", "Entity", "What", "Acknowledge")
        rows = []
        for it in part["items"]:
            what = it["said"] + (("；" if zh else "; ") + it["facts"] if it.get("facts") else "")
            ack = (f'<a href="{html.escape(it["ack"], quote=True)}">{"确认" if zh else "ack"}</a>'
                   if it.get("ack") and SAFE_URL.match(it["ack"]) else "")
            rows.append(f'<tr style="background:{ROW_COLOUR.get(it["severity"] or "", "#fff")}">'
                        f"<td {CELL}>{html.escape(it['level'])}</td><td {CELL}>{html.escape(it['who'])}</td>"
                        f"<td {CELL}>{html.escape(what)}</td><td {CELL}>{ack}</td></tr>")
        rest = part["count"] - len(part["items"])
        if rest > 0:
            rows.append(f'<tr><td {CELL} colspan="4">{_inline(more_line(rest, part["lang"], part.get("all"))[2:])}</td></tr>')
        blocks += [f"<h3>{html.escape(part['head'])}</h3>", to_html("\n".join([part["summary"], *part["notes"]])),
                   '<table style="border-collapse:collapse">\n<tr>' + "".join(f"<th {CELL}>{h}</th>" for h in head)
                   + "</tr>\n" + "\n".join(rows) + "\n</table>",
                   to_html("\n".join(x for x in (*part["after"], part["runbook"], part.get("ack_hint"), part["to"]) if x))]
    tail = [link_line(message.links) if message.links else "", " ".join(f"@{m}" for m in message.mentions)]
    blocks += [to_html(x) for x in tail if x]
    return "\n".join(blocks)


def _inline(markdown_line: str) -> str:
    return to_html(markdown_line).removeprefix("<p>").removesuffix("</p>")


def _text(err) -> str:
    return err.decode(errors="replace") if isinstance(err, bytes) else str(err)
