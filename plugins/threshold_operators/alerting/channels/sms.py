"""SMS and voice calls through any HTTP provider, described by a request template.

One module, two kinds: ``sms`` texts what happened in one segment (70 characters of Chinese, 160
of GSM-7 only: the severity, the rule, the top entity by name, how many, its number), then the
acknowledge link when the whole text stays within ``extra.max_segments`` (default 4, each billed;
a signed acknowledge link is about 150 characters);
``voice`` calls with one short sentence (``channels.layout``). ``message.mentions`` are the
mobiles; each gets a request of its own.

The Airflow connection (type ``http``): host = the provider's base URL, password = its API key,
login = an account id if the provider wants one, and in extra the template::

    {"endpoint": "/sms/send",                      # appended to host; may use the variables
     "method": "POST",                             # default POST
     "format": "json",                             # json (default) or form
     "headers": {"Authorization": "Bearer {{ api_key }}"},
     "query": {},                                  # query-string parameters, rendered alike
     "body": {"to": "{{ to }}", "text": "{{ text }}"},
     "ok": {"field": "code", "equals": 0},         # success: a 2xx reply whose JSON field equals this
     "retryable_values": [429001],                 # values of that field worth retrying (busy, rate limit)
     "message_field": "message",                   # the reply field that explains a failure
     "max_segments": 4}                            # sms: segments a text may take, link included

Every string in ``endpoint``, ``headers``, ``query`` and ``body`` is a Jinja2 template rendered in a
sandbox with ``to``, ``text``, ``title``, ``severity``, ``kind``, ``api_key``, ``login`` and
``links`` (a list of ``{label, url}``); values go into the structure before it is serialised, so
a message can never break the JSON. ``field`` may be dotted (``result.code``). Without ``ok``,
any 2xx reply is a success.

Failures: an HTTP error (429 and 5xx retried, other 4xx not), a network error (retried), a
reply whose field is not ``equals`` (retried when its value is in ``retryable_values``). With
several recipients: any retryable failure makes the whole message retryable; the recipients this
sender already reached for it are skipped on the retry while the process lives (a restarted
task may text them again: a duplicate page beats a lost one); recipients refused for good
beside others reached make a success that names them.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable

from threshold_operators.alerting.channels.base import Message, SendResult, lookup_connection
from threshold_operators.alerting.channels.http_connection import http_session
from threshold_operators.alerting.channels.layout import fits_sms, sms_segments, sms_units
from threshold_operators.alerting.channels.markdown import cut, plain

MAX_SMS = 300
MAX_SEGMENTS = 4
MAX_VOICE = {"zh": 80, "en": 140}  # characters of a spoken sentence (English words are longer to write)
TEMPLATE_KEYS = {"endpoint", "method", "format", "headers", "query", "body", "ok", "retryable_values",
                 "message_field", "max_segments"}
CJK = re.compile(r"[\u3400-\u9fff]")
TIMES = re.compile(r"(?<![A-Za-z0-9])[×x](\d+(?:\.\d+)?)")  # ×4.0 (x4.0 in an English SMS form)
BRACKETS = re.compile(r"[\[\]【】()（）#*`_]")


def _first_form(message: Message) -> dict | None:
    return next((p for p in message.parts if isinstance(p, dict) and p["items"]), None)


def _same_words(line: str, title: str) -> bool:
    """Whether ``line`` opens with what ``title`` says (brackets aside): "【已恢复】订单骤降：…" and
    "[已恢复] 订单骤降"."""
    words = BRACKETS.sub(" ", title).split()
    return bool(words) and all(w in line for w in words)


def _what_happened(form: dict) -> list[str]:
    """Sentences of one alert message, from the most to the least said: the head, the top entity
    (its name, then cut), how many, its numbers (all; then without why a held alert still fires;
    then the rule's own, as the double alert's stock without its spike; then none)."""
    zh = form["lang"] == "zh"
    top, n = form["items"][0], form["count"]
    out = []
    full, bare = top["said"], top.get("bare") or top["said"]
    names = (top["short"], cut(top["short"], 12))
    # why a held alert still fires goes before the name is cut; the numbers before the evidence
    tries = [(full, names[0]), (bare, names[0]), (full, names[1]), (bare, names[1])]
    tries += [(said, name) for said in (top.get("own") or bare, "") for name in names]
    for said, name in dict.fromkeys(tries):
        said = said if zh else said.replace("×", "x")  # GSM-7 has no ×: an English SMS keeps its numbers
        gap = " " if name[-1:].isascii() else ""  # "Brand A 等", "奶粉等"
        many = (f"{gap}等 {n} 个{form['entity']}" if zh else f" and {n - 1} more") if n > 1 else ""
        body = f"{name}{many}" + ((("，" if zh else ", ") + said) if said else "")
        out.append(f"{form['head']}：{body}" if zh else f"{form['head']}: {body}")
    return out


def sms_text(message: Message, max_segments: int = MAX_SEGMENTS) -> str:
    """What happened in one SMS segment, then the first link (the acknowledge link) when the text
    stays within ``max_segments``. A message without parts: its title and first lines, cut to a
    segment."""
    form = _first_form(message)
    facts = next((t for t in _what_happened(form) if fits_sms(t)), None) if form is not None else None
    if facts is None:
        lines = [ln for ln in plain(message.text).splitlines() if ln.strip()]
        if not (lines and _same_words(lines[0], message.title)):  # a text that opens with its title says it once
            lines.insert(0, message.title)
        facts = "\n".join(lines)
        while not fits_sms(facts) and len(facts) > 1:  # a segment's worth, cut at a character
            facts = cut(facts, len(facts) - max(1, (sms_units(facts)[0] - 70) // 2))
    if message.links:
        with_link = f"{facts}\n{message.links[0][1]}"
        if sms_segments(with_link) <= max_segments:
            return with_link
    return facts


def voice_text(message: Message) -> str:
    """One sentence a text-to-speech voice reads: the severity and rule, the top entity and how
    many, its number (×4.4 read as "4.4 倍" / "4.4 times"); the title alone when that is too long.
    No brackets, no links; news that needs nobody (a resolution) asks for nothing."""
    form = _first_form(message)
    options = _what_happened(form) if form is not None else []
    options = [o for o in options if "…" not in o] + [o for o in options if "…" in o]  # a cut name reads badly
    options.append(plain(message.title))
    zh = form["lang"] == "zh" if form is not None else bool(CJK.search(message.title))
    for text in options:
        text = TIMES.sub(lambda m: f"{m.group(1)} 倍" if zh else f"{m.group(1)} times", text)
        text = text.replace("（", "，").replace("(", ", ")  # an aside is a pause when read out
        sentence = re.sub(r"\s+", " ", BRACKETS.sub(" ", text)).strip(" ，,：:")
        sentence = re.sub(r"\s+([，,：:])", r"\1", sentence.replace("。", "，").replace("；", "，"))
        if len(sentence) <= MAX_VOICE["zh" if zh else "en"]:
            break
    sentence = cut(sentence, MAX_VOICE["zh" if zh else "en"])
    if (message.data or {}).get("event") == "resolved":
        return f"{sentence}。" if zh else f"{sentence}."
    return f"{sentence}，请尽快处理。" if zh else f"{sentence}. Please respond."


def template_problems(template: dict) -> list[str]:
    problems = [f"extra.{k}: unknown template key" for k in template if k not in TEMPLATE_KEYS]
    if not isinstance(template.get("endpoint"), str):
        problems.append("extra.endpoint: required (the provider's path, e.g. /sms/send)")
    if template.get("format", "json") not in ("json", "form"):
        problems.append("extra.format: json or form")
    for key in ("headers", "query"):
        if not isinstance(template.get(key, {}), dict):
            problems.append(f"extra.{key}: a mapping")
    ok = template.get("ok")
    if ok is not None and not (isinstance(ok, dict) and isinstance(ok.get("field"), str) and "equals" in ok):
        problems.append('extra.ok: {"field": "...", "equals": ...}')
    segments = template.get("max_segments", MAX_SEGMENTS)
    if not (isinstance(segments, int) and not isinstance(segments, bool) and segments >= 1):
        problems.append("extra.max_segments: a whole number of at least 1")
    if not isinstance(template.get("retryable_values", []), list):
        problems.append("extra.retryable_values: a list")
    return problems


def _same(a, b) -> bool:
    return a == b or str(a) == str(b)


def _field(body, path: str):
    for part in path.split("."):
        if not isinstance(body, dict) or part not in body:
            return None
        body = body[part]
    return body


def _mask(mobile: str) -> str:
    return mobile[:3] + "****" + mobile[-4:] if len(mobile) >= 8 else "****"


class SmsSender:
    kind = "sms"

    def __init__(self, session, base_url: str, api_key: str, template: dict, *, login: str | None = None,
                 name: str | None = None, clock: Callable[[], float] = time.time, timeout: float = 10.0):
        problems = template_problems(template)
        if problems:
            raise ValueError("; ".join(problems))
        from jinja2 import StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        self.session, self.base_url, self.name = session, base_url.rstrip("/"), name or self.kind
        self.template = template
        self._api_key, self._login, self._clock, self._timeout = api_key, login, clock, timeout
        self._jinja = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        self._reached: dict[str, set[str]] = {}  # message digest -> mobiles reached, while it is retried

    @classmethod
    def from_connection(cls, conn_id: str, **kwargs) -> SmsSender:
        conn = lookup_connection(conn_id)
        session, base_url = http_session(conn_id, conn)
        kwargs.setdefault("name", conn_id)
        return cls(session, base_url, conn.password or "", dict(conn.extra_dejson or {}),
                   login=conn.login, **kwargs)

    def text(self, message: Message) -> str:
        return sms_text(message, self.template.get("max_segments", MAX_SEGMENTS))

    def worst_case_seconds(self, message: Message | None = None) -> float:
        """One request per number, one after the other, each up to its connect and read timeouts."""
        numbers = len(set(message.mentions)) if message is not None else 10
        return 2 * self._timeout * max(numbers, 1)

    def payload(self, message: Message, to: str) -> dict:
        """The request for one recipient: method, url, headers, query and body, rendered."""
        values = {"to": to, "text": self.text(message), "title": message.title, "severity": message.severity or "",
                  "kind": self.kind, "api_key": self._api_key, "login": self._login or "",
                  "links": [{"label": label, "url": url} for label, url in message.links]}
        t = self.template
        return {"method": t.get("method", "POST").upper(),
                "url": self.base_url + self._render(t["endpoint"], values),
                "headers": self._render(t.get("headers", {}), values),
                "query": self._render(t.get("query", {}), values),
                "body": self._render(t.get("body"), values)}

    def _render(self, node, values):
        if isinstance(node, str):
            return self._jinja.from_string(node).render(values)
        if isinstance(node, dict):
            return {k: self._render(v, values) for k, v in node.items()}
        if isinstance(node, list):
            return [self._render(v, values) for v in node]
        return node

    def send(self, message: Message) -> SendResult:
        mobiles = list(dict.fromkeys(m for m in message.mentions if m))
        if not mobiles:
            return SendResult(False, False, f"no mobile numbers to {'call' if self.kind == 'voice' else 'text'}")
        digest = hashlib.sha256(f"{self.kind}|{message.title}|{message.text}|{mobiles}".encode()).hexdigest()
        reached = self._reached.setdefault(digest, set())
        retry, final = [], []
        for mobile in mobiles:
            if mobile in reached:
                continue
            result = self._send_one(message, mobile)
            if result.ok:
                reached.add(mobile)
            elif result.retryable:
                retry.append(result.error)
            else:
                final.append(result.error)
        if retry:
            return SendResult(False, True, self._scrub("; ".join(retry + final))[:300])
        self._reached.pop(digest, None)
        if final and not reached:
            return SendResult(False, False, self._scrub("; ".join(final))[:300])
        if final:
            return SendResult(True, False, self._scrub("sent; refused for good: " + "; ".join(final))[:300])
        return SendResult.success()

    def _send_one(self, message: Message, mobile: str) -> SendResult:
        import requests
        from jinja2 import TemplateError

        who = f"{self.kind} to {_mask(mobile)}"
        try:
            req = self.payload(message, mobile)
        except TemplateError as exc:
            return SendResult(False, False, f"{who}: template error: {type(exc).__name__}: {str(exc)[:100]}")
        body = req["body"]
        kwargs = {"params": req["query"] or None, "headers": dict(req["headers"]), "timeout": self._timeout}
        if body is not None and self.template.get("format", "json") == "json":
            kwargs["data"] = json.dumps(body, ensure_ascii=False).encode()
            kwargs["headers"].setdefault("Content-Type", "application/json; charset=utf-8")
        elif body is not None:
            kwargs["data"] = body
        try:
            reply = self.session.request(req["method"], req["url"], **kwargs)
        except requests.RequestException as exc:  # refused, reset, timed out: the provider is down
            return SendResult(False, True, f"{who}: {type(exc).__name__}")
        status = reply.status_code
        if not 200 <= status < 300:
            return SendResult(False, status == 429 or status >= 500, f"{who}: HTTP {status}: {reply.text[:150]}")
        ok = self.template.get("ok")
        if not ok:
            return SendResult.success()
        try:
            answer = reply.json()
        except ValueError:
            return SendResult(False, True, f"{who}: HTTP {status} without JSON: {reply.text[:150]}")
        value = _field(answer, ok["field"])
        if _same(value, ok["equals"]):
            return SendResult.success()
        retryable = any(_same(value, v) for v in self.template.get("retryable_values", []))
        explain = _field(answer, self.template["message_field"]) if self.template.get("message_field") else None
        return SendResult(False, retryable, f"{who}: {ok['field']}={value!r}" + (f": {str(explain)[:150]}" if explain else ""))

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


class VoiceSender(SmsSender):
    """A phone call reading one sentence; the same template format, its own connection."""

    kind = "voice"

    def text(self, message: Message) -> str:
        return voice_text(message)
