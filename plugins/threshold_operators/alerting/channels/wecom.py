"""WeCom group robot (企业微信群机器人): markdown messages.

The Airflow connection (type ``http``): host ``https://qyapi.weixin.qq.com`` (or a proxy) and the
robot's webhook key as the password. A message is ``POST {host}/cgi-bin/webhook/send?key=KEY``
with ``{"msgtype": "markdown", "markdown": {"content": ...}}``; content is at most 4096 bytes of
UTF-8: a long list shows the top entities that fit, then "+N more" with a link to the full list
(``channels.layout``); the message's links are always kept.

WeCom's markdown can @ only by user id (``<@userid>``), not by mobile; a mobile can be @-ed only
in a ``text`` message (``mentioned_mobile_list``). To keep one request per message (a retry never
half-sends), the mobiles are written as ``@mobile`` lines at the end of the markdown: readable,
but they do not notify. Use DingTalk, SMS or voice to page a person.

WeCom answers HTTP 200 with ``errcode``: 0 is success; 45009 (more than 20 messages a minute)
and -1 (system busy) are retried later; others (93000 invalid key, 40058 bad content) are not.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable

from threshold_operators.alerting.channels.base import (
    Message,
    SendResult,
    errcode_result,
    lookup_connection,
    post_json,
)
from threshold_operators.alerting.channels.http_connection import http_session
from threshold_operators.alerting.channels.layout import fit_markdown
from threshold_operators.alerting.channels.markdown import link_line

RATE_LIMITED = 45009  # "api freq out of limit": 20 messages a minute per robot
RETRYABLE_CODES = {RATE_LIMITED, -1}  # -1: "system busy"
MAX_BYTES = 4096


class WeComSender:
    def __init__(self, session, base_url: str, key: str, *, name: str = "wecom",
                 clock: Callable[[], float] = time.time, timeout: float = 10.0):
        self.session, self.base_url, self.name = session, base_url.rstrip("/"), name
        self._key, self._clock, self._timeout = key, clock, timeout

    @classmethod
    def from_connection(cls, conn_id: str, **kwargs) -> WeComSender:
        conn = lookup_connection(conn_id)
        session, base_url = http_session(conn_id, conn)
        kwargs.setdefault("name", conn_id)
        return cls(session, base_url, conn.password or (conn.extra_dejson or {}).get("key", ""), **kwargs)

    def payload(self, message: Message) -> dict:
        tail = "\n".join(f"@{m}" for m in message.mentions)
        links = link_line(message.links)
        ending = "".join(f"\n\n{part}" for part in (links, tail) if part)
        head = f"### {message.title}\n"
        text = fit_markdown(message, lambda t: len((head + t + ending).encode()), MAX_BYTES)
        content = head + text + ending
        return {"msgtype": "markdown", "markdown": {"content": content}}

    def send(self, message: Message) -> SendResult:
        url = f"{self.base_url}/cgi-bin/webhook/send?{urllib.parse.urlencode({'key': self._key})}"
        return errcode_result(post_json(self.session, url, self.payload(message), self._timeout), RETRYABLE_CODES)
