"""What people read: every message of the pipeline, in Chinese (the default) and English.

A message is stored in the outbox in both languages; each channel sends the one it is set to
(``routing.yaml``: ``language: en``), and each language carries the rule's runbook in that
language only (``runbook: {zh: ..., en: ...}``; one string is both). Every alert message says
which rule, how severe, which entities, the value against its baseline and threshold, the data
window, what to do (the runbook) and how to acknowledge (a signed link when the ``storefence_ack``
connection is set up, the CLI command otherwise). Many entities make one message: the count and
the top ``TOP``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TOP = 10
SEVERITY = {"zh": {"blue": "蓝色", "yellow": "黄色", "red": "红色", None: "-"},
            "en": {"blue": "blue", "yellow": "yellow", "red": "red", None: "-"}}
EVENT = {"zh": {"fired": "预警", "worsened": "升级预警", "resolved": "已恢复", "escalated": "升级",
                "repeat": "仍在告警"},
         "en": {"fired": "alert", "worsened": "worse", "resolved": "resolved", "escalated": "escalated",
                "repeat": "still firing"}}


@dataclass
class Text:
    """One message in both languages, with what every channel may use besides the text.

    ``forms``: per language, the message's parts (``Form``) when it lists alerts: each channel
    lays them out in its own form and within its own limits (a chat robot's byte budget, a card's
    fields, an email's table, an SMS segment, one spoken sentence); the ``text`` is the same parts
    as markdown, for the channels and tools that read text."""

    title: str
    text: str
    title_en: str
    text_en: str
    severity: str | None = None
    links: list[tuple[str, str]] = field(default_factory=list)
    forms: dict[str, dict] | None = None

    def payload(self, mentions=(), emails=(), data=None) -> dict:
        out = {"title": self.title, "text": self.text, "title_en": self.title_en, "text_en": self.text_en,
               "severity": self.severity, "links": [list(link) for link in self.links],
               "mentions": list(mentions), "emails": list(emails), "data": data or {}}
        if self.forms:
            out["forms"] = self.forms
        return out


def _num(v) -> str:
    if v is None:
        return "n/a"
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return str(v)


def _float(v) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


DIGITS = {"int": 0, "1f": 1, "2f": 2, "percent": 1, "money": 2}  # decimals of each ``format:``


def fmt(v: float, form: str, trim: bool = False) -> str:
    """A number in a metric's ``format``: int 48, 1f 6.6, 2f 6.57, percent 31.4% (of a 0..1 share),
    money 1,234.50. ``trim``: drop trailing zeros (a threshold as written: 7, 5%, not 7.0, 5.0%)."""
    scaled = v * 100 if form == "percent" else v
    text = f"{scaled:{',' if form == 'money' else ''}.{DIGITS.get(form, 1)}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    if text.lstrip("-").strip("0.,") == "":
        text = text.lstrip("-")  # no "-0.0"
    return text + ("%" if form == "percent" else "")


def _said(v: float, spec, lang: str, trim: bool = False) -> str:
    """A value of a metric with its unit: "6.6 天", "31.4%", "62.3%" (unit %), 48 (no unit in English)."""
    unit = spec.unit.in_language(lang) if spec.unit is not None and spec.format != "percent" else ""
    return fmt(v, spec.format, trim) + (unit if unit == "%" else f" {unit}" if unit else "")


def _usual(base: float, spec, lang: str) -> str:
    """The baseline, "平时 12 单" / "usually 12": an average; of a count, under 1 is said so, under 10
    with one decimal (平时 4.5 单 next to ×4.4, where "5" would contradict the multiple)."""
    word = "平时" if lang == "zh" else "usually"
    if spec.format == "int" and 0 < base < 1:
        return f"{word}不到 {_said(1, spec, lang)}" if lang == "zh" else f"{word} under {_said(1, spec, lang)}"
    if spec.format == "int" and base < 10 and round(base, 1) != round(base):  # 4.5, not 5: the multiple agrees
        return f"{word} {_said(base, spec.model_copy(update={'format': '1f'}), lang)}"
    return f"{word} {_said(base, spec, lang)}"


def _times(x: float, trim: bool = False) -> str:
    """A ratio to the baseline: ×4.0, ×0.45 (two decimals below 1, where a drop's threshold is)."""
    text = f"{x:.1f}" if x >= 1 else f"{x:.2f}"
    return "×" + (text.rstrip("0").rstrip(".") if trim else text)


def _chance(z: float) -> str:
    """A normal quantile as "1 in N" (N to one significant figure): 4.75 -> 1,000,000."""
    import math

    p = 0.5 * math.erfc(z / math.sqrt(2))
    if p <= 0:
        return "0"
    n = 1 / p
    digits = max(0, int(math.floor(math.log10(n))))
    return f"{round(n / 10 ** digits) * 10 ** digits:,}"


def _condition(rule, metric):
    primary = getattr(rule, "primary", None)
    if primary is not None and primary.metric == metric:
        return primary
    return next((c for c in getattr(rule, "conditions", ()) if c.metric == metric), None)


def said(rule, b: dict, lang: str, *, held: bool = True) -> str | None:
    """The breach as people say it, or None (the rule has no ``metrics:`` entry for the metric):
    zh 库存可售 6.6 天（阈值 7 天） · 订单 48 单，平时 12 单，×4.0（阈值 ×3）; en stock cover 6.6 days
    (threshold 7 days) · orders 48, usually 12, ×4.0 (threshold ×3). The count of a Poisson tail is
    told with its baseline and, for the threshold, the chance in words (the score is no unit of it).
    An alert inside its threshold but not past its ``recover`` level (still firing, the hysteresis)
    says so, unless ``held=False`` (the short forms: an SMS, a call)."""
    metric = b.get("metric")
    labels = getattr(rule, "metric_label", None)
    spec = labels(metric) if labels else None
    cond = _condition(rule, metric)
    if spec is None or cond is None:
        return None
    zh = lang == "zh"
    compare = cond.compare
    value, base, thr = _float(b.get("value")), _float(b.get("baseline")), _float(b.get("threshold"))
    raw = _float((b.get("metrics") or {}).get(metric))
    if raw is None and value is not None:  # the metric itself, from the compared value
        raw = {"value": value, "ratio": value * base if base is not None else None,
               "delta": value + base if base is not None else None,
               "pct_change": base * (1 + value / 100) if base is not None else None}.get(compare)
    parts = [f"{spec.label.in_language(lang)} {_said(raw, spec, lang) if raw is not None else 'n/a'}"]
    if base is not None and compare != "value":
        parts.append(_usual(base, spec, lang))

    def level(x: float) -> str:  # a threshold (or the recovery level) in the compared value's unit
        if compare == "value":
            return _said(x, spec, lang, trim=True)
        if compare == "ratio":
            return _times(x, trim=True)
        if compare == "pct_change":
            return f"{x:+g}%"
        if compare == "delta":
            return "+" * (x >= 0) + _said(x, spec, lang, trim=True)
        return f"{x:g}"

    if compare == "ratio" and value is not None:
        parts.append(_times(value))
    elif compare in ("pct_change", "delta") and value is not None:
        parts.append(f"{value:+.1f}%" if compare == "pct_change" else "+" * (value >= 0) + _said(value, spec, lang))
    elif compare == "poisson_z" and value is not None:
        parts.append(f"高出平时 {value:.1f} 个标准差" if zh else f"{value:.1f} standard deviations above usual")
    elif compare == "poisson_tail" and thr is not None:
        n = _chance(thr)  # a score, not the metric's unit: the chance it stands for, in words
        words = f"远高于平时：偶然出现的概率低于 1/{n}" if zh else f"far above usual: a chance below 1 in {n}"
        return "，".join(parts) + f"（{words}）" if zh else ", ".join(parts) + f" ({words})"
    text = "，".join(parts) if zh else ", ".join(parts)
    if thr is not None:
        text += f"（阈值 {level(thr)}）" if zh else f" (threshold {level(thr)})"
        inside = cond.recover is not None and value is not None and (
            value < thr if cond.above is not None else value > thr)
        if held and inside:  # back inside the threshold but not past the recovery level: still firing, said why
            text += (f"，未回到恢复线 {level(cond.recover)}，仍在预警" if zh
                     else f", not yet back past the recovery level {level(cond.recover)}: still firing")
    return text


STOCK_LEFT = ("stock", "daily_forecast")  # attributes that say how long the stock lasts


def context(rule, b: dict, lang: str) -> str | None:
    """The facts to act on, from the breach's ``attributes`` that the rule's ``metrics:`` label:
    zh 现货 10 件，在途 0 件，日均预测 48.0 件，约 5 小时售罄 (the hours when the rule carries stock and a
    daily forecast: the seed's "仅够维持5小时销售"), and a spike's last hours (``recent``: 近 3 小时每小时
    12 → 30 → 48 单); None when there is nothing to add. Pure."""
    labels = getattr(rule, "metric_label", None)
    attrs = b.get("attributes") or {}
    if labels is None or not (attrs or b.get("recent")):
        return None
    parts = []
    for name in getattr(rule, "attributes", ()):
        spec, v = labels(name), _float(attrs.get(name))
        if spec is not None and v is not None:
            parts.append(f"{spec.label.in_language(lang)} {_said(v, spec, lang)}")
    stock, per_day = (_float(attrs.get(k)) for k in STOCK_LEFT)
    if stock is not None and per_day:
        hours = max(0.0, stock) / per_day * 24
        if hours < 72:  # beyond three days the cover in days says it
            h = f"{hours:.0f}" if hours >= 1 else "不到 1" if lang == "zh" else "under 1"
            parts.append(f"约 {h} 小时售罄" if lang == "zh" else f"sold out in about {h} h")
    recent = b.get("recent") or {}
    spec = labels(b.get("metric")) if b.get("metric") else None
    if recent.get("counts") and spec is not None:  # a spike building, hour by hour (``engine.evidence``)
        series = " → ".join(fmt(float(v), spec.format) for v in recent["counts"])
        unit = spec.unit.in_language(lang) if spec.unit is not None else ""
        n = recent.get("hours", len(recent["counts"]))
        parts.append(f"近 {n} 小时每小时 {series}" + (f" {unit}" if unit else "") if lang == "zh"
                     else f"last {n} hours by hour {series}" + (f" {unit}" if unit else ""))
    if not parts:
        return None
    return "，".join(parts) if lang == "zh" else ", ".join(parts)


def past_threshold(rule, b: dict) -> float:
    """How far past its threshold a breach is (1: at it; more: further), the way the rule's primary
    condition fires: value over threshold above, threshold over value below. Pure."""
    value, thr = _float(b.get("value")), _float(b.get("threshold"))
    if value is None or not thr:
        return 0.0
    primary = getattr(rule, "primary", None)
    low = getattr(primary, "below", None) is not None if primary is not None else rule.fires_on == "low"
    if low:  # the primary condition's way (a compound rule fires high, its stock metric low)
        return thr / value if value > 0 else float("inf")
    return value / thr


def top_first(rule, breaches: list[dict]) -> list[dict]:
    """The breaches a message lists first: the worst severity, then the furthest past the threshold."""
    return sorted(breaches, key=lambda b: (-SEVERITY_RANK.get(b.get("severity"), 0), -past_threshold(rule, b)))


SEVERITY_RANK = {"red": 3, "yellow": 2, "blue": 1}


def who(b: dict, lang: str) -> str:
    """The entity as a person knows it, with its key kept small for search: zh 婴儿配方奶粉 1段 800g
    （Brand A · infant_formula）shop-01/SKU-BEA-000419; a shop by its name; else the key as it is
    (``names`` from the evaluate task, ``engine.names``). Pure."""
    key = b.get("entity_key") or ""
    names = b.get("names") or {}
    small = "/".join(part.partition("=")[2] or part for part in key.split("/"))
    entity = _name(names, "entity", lang)
    if entity:
        about = _name(names, "about", lang)
        if lang == "zh":
            return entity + (f"（{about}）" if about else " ") + small
        return entity + (f" ({about}) " if about else " ") + small
    if names.get("shop") and set(k for k, _, _ in (p.partition("=") for p in key.split("/"))) == {"shop_id"}:
        return f"{names['shop']} {small}"
    return key


def _name(names: dict, field: str, lang: str) -> str | None:
    """A name in the message's language: ``entity_en`` / ``about_en`` in English where the lookup
    gave one (a glossary code, a batch), else the shop's own name."""
    return (lang == "en" and names.get(f"{field}_en")) or names.get(field)


def names_of(people: list, lang: str) -> str:
    """The people told, in the message's language: a routing.yaml ``name`` is one text or
    ``{zh: ..., en: ...}`` (``rules.model.Localized``)."""
    return ", ".join(p.in_language(lang) if hasattr(p, "in_language") else str(p) for p in people)


def short_name(b: dict, lang: str = "zh") -> str:
    """The entity in the fewest words, for an SMS or a call: its name, its shop's, or its key's last part."""
    names = b.get("names") or {}
    key = b.get("entity_key") or ""
    return _name(names, "entity", lang) or names.get("shop") or key.rsplit("/", 1)[-1].partition("=")[2] or key


def breach_said(rule, b: dict, lang: str, *, held: bool = True) -> str:
    """The breach's numbers as people say them; for the double alert, the spike that came with it
    first (``evidence``: the referenced rules' breaches, said by the evaluate task). ``held=False``:
    without why an alert inside its threshold still fires (the forms with a budget of a few words)."""
    what = said(rule, b, lang, held=held)
    if what is None:  # no ``metrics:`` entry: the column and the numbers as they are
        base = f", {'基线' if lang == 'zh' else 'baseline'} {_num(b.get('baseline'))}" if b.get("baseline") is not None else ""
        thr = f", {'阈值' if lang == 'zh' else 'threshold'} {_num(b.get('threshold'))}" if b.get("threshold") is not None else ""
        what = f"{b.get('metric')} {_num(b.get('value'))}{base}{thr}"
    evidence = [e["said"][lang] for e in b.get("evidence") or () if (e.get("said") or {}).get(lang)]
    return " ＋ ".join([*evidence, what]) if evidence else what


def item(rule, b: dict, lang: str, link: str | None) -> dict:
    """One entity of a message, in parts: severity, who (name and small key), what was measured
    (``said``), what else to know (``facts``) and its acknowledge link."""
    return {"severity": b.get("severity"), "level": SEVERITY[lang].get(b.get("severity"), b.get("severity")),
            "who": who(b, lang), "short": short_name(b, lang), "said": breach_said(rule, b, lang),
            "bare": breach_said(rule, b, lang, held=False),
            "own": breach_said(rule, {**b, "evidence": None}, lang, held=False),  # a short form's: no evidence
            "facts": context(rule, b, lang), "ack": link}


def item_line(it: dict, lang: str) -> str:
    """An item as a markdown list line: ``- [红色] who: said；facts [确认](url)``."""
    what = it["said"] + (("；" if lang == "zh" else "; ") + it["facts"] if it.get("facts") else "")
    ack = f" [{'确认' if lang == 'zh' else 'ack'}]({it['ack']})" if it.get("ack") else ""
    return f"- [{it['level']}] {it['who']}: {what}{ack}"


def more_line(n: int, lang: str, url: str | None = None) -> str:
    """"+N more", with a link to the full list (the alerts page) when there is one."""
    if n <= 0:
        return ""
    if lang == "zh":
        return f"- ……另有 {n} 个" + (f"，[查看全部]({url})" if url else "")
    return f"- ... and {n} more" + (f" ([see all]({url}))" if url else "")


def markdown(form: dict, shown: int | None = None) -> str:
    """A form as the message's markdown, with its first ``shown`` items (default ``TOP``) and a
    "+N more" line for the rest. Channels with a byte budget lower ``shown`` until it fits."""
    lang = form["lang"]
    shown = min(TOP if shown is None else shown, len(form["items"]))
    body = [form["head"], form["summary"], *form["notes"], *(item_line(it, lang) for it in form["items"][:shown]),
            more_line(form["count"] - shown, lang, form.get("all")), *form["after"]]
    tail = [form["runbook"], form.get("ack_hint"), form["to"]]
    return "\n".join(x for x in body if x) + "\n\n" + "\n".join(x for x in tail if x)


def _ack_hint(lang: str, fingerprints: list[str]) -> str:
    if not fingerprints:
        return ""
    cmd = f"`storefence ack {fingerprints[0][:10]}`"
    return f"确认：{cmd}（或回复值班群）" if lang == "zh" else f"Acknowledge: {cmd}"


def when(iso: str, tz: str) -> str:
    """An ISO time as people read it: local time of the shop's timezone."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    try:
        return datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(iso)


def waited(d) -> dict[str, str]:
    """How long, in each language: "2 小时 10 分钟" / "2 h 10 min". Pure."""
    minutes = max(0, int(d.total_seconds() // 60))
    h, m = divmod(minutes, 60)
    if h >= 48:
        return {"zh": f"{h // 24} 天 {h % 24} 小时", "en": f"{h // 24} d {h % 24} h"}
    if h:
        return {"zh": f"{h} 小时" + (f" {m} 分钟" if m else ""), "en": f"{h} h" + (f" {m} min" if m else "")}
    return {"zh": f"{m} 分钟", "en": f"{m} min"}


FORM_ITEMS = 50  # items a form keeps (an email's table shows them all; chat messages the top TOP)


def alert_message(rule, event: str, severity: str | None, breaches: list[dict], window: tuple[str, str],
                  level: int, people: list, links: dict[str, str] | None = None,
                  count: int | None = None, tz: str = "Asia/Shanghai", unacknowledged=None,
                  list_url: str | None = None) -> Text:
    """Fired, worsened, escalated or still-firing news of one rule: one message for all its entities.
    ``links``: fingerprint -> acknowledge URL (signed links), when they are set up; ``unacknowledged``:
    how long the alerts have waited for somebody (an escalation, a repeat says so); ``list_url``: the
    rule's alerts on the alerts page (the "+N more" link)."""
    links = links or {}
    count = len(breaches) if count is None else count
    breaches = top_first(rule, breaches)
    forms = {}
    for lang in ("zh", "en"):
        name = rule.name.zh if lang == "zh" else rule.name.en
        sev = SEVERITY[lang].get(severity, severity)
        ev = EVENT[lang][event]
        if lang == "zh":
            head = f"【{sev}{ev}】{name}" if event in ("fired", "worsened") else f"【{ev}·{sev}】{name}"
            summary = f"{count} 个{_entity_zh(rule.entity, spaced=True)}，数据时间 {when(window[0], tz)} 至 {when(window[1], tz)}（{tz}）："
        else:
            head = f"[{sev} {ev}] {name}"
            summary = f"{count} {entity_en(rule.entity, count)}, data {when(window[0], tz)} .. {when(window[1], tz)} ({tz}):"
        notes = []
        if unacknowledged is not None:
            span = waited(unacknowledged)[lang]
            notes.append(f"已 {span}无人确认，现通知上一级。" if lang == "zh" and event == "escalated" else
                         f"已 {span}无人确认。" if lang == "zh" else
                         f"Unacknowledged for {span}" + (": told to the next level." if event == "escalated" else "."))
        fps = [b["fingerprint"] for b in breaches if b.get("fingerprint")]
        forms[lang] = {
            "lang": lang, "rule_id": rule.id, "event": event, "severity": severity,
            "title": f"[{sev}] {name}" + ("" if event == "fired" else f" ({ev})"), "name": name,
            "head": head, "summary": summary, "notes": notes, "count": count,
            "entity": _entity_zh(rule.entity, spaced=True) if lang == "zh" else entity_en(rule.entity, count),
            "items": [item(rule, b, lang, links.get(b.get("fingerprint", ""))) for b in breaches[:FORM_ITEMS]],
            "after": [x for x in (data_incomplete_line(breaches, lang),) if x],
            "runbook": ("处理：" if lang == "zh" else "What to do: ") + rule.runbook_in(lang),
            "ack_hint": None if links else (_ack_hint(lang, fps) or None),
            "to": ("通知：" if lang == "zh" else "To: ") + names_of(people, lang) + f" (L{level})",
            "all": list_url}
    first = [(("确认 / Acknowledge"), links[b["fingerprint"]]) for b in breaches[:1] if b.get("fingerprint") in links]
    zh, en = forms["zh"], forms["en"]
    return Text(zh["title"], markdown(zh), en["title"], markdown(en), severity, first, forms)


def resolved_message(rule, entity_keys: list[str], window_end: str, level: int, people: list,
                     tz: str = "Asia/Shanghai", severity: str | None = None,
                     names: dict[str, dict] | None = None) -> Text:
    """``severity``: what the alerts were (it routes the message to the channels that told of them);
    ``names``: entity key -> its names, as the alerts carried them (``engine.names``)."""
    names = names or {}
    shown = entity_keys[:TOP]
    n = len(entity_keys)
    word = _entity_zh(rule.entity, spaced=True)
    zh = [f"【已恢复】{rule.name.zh}：{n} 个{word}{' ' * word.isascii()}恢复正常（数据时间 {when(window_end, tz)}）"]
    en = [f"[resolved] {rule.name.en}: {n} {entity_en(rule.entity, n)} back to normal (data {when(window_end, tz)})"]
    zh += [f"- {who({'entity_key': k, 'names': names.get(k)}, 'zh')}" for k in shown] + [more_line(n - TOP, "zh")]
    en += [f"- {who({'entity_key': k, 'names': names.get(k)}, 'en')}" for k in shown] + [more_line(n - TOP, "en")]
    zh.append(f"通知：{names_of(people, 'zh')} (L{level})")
    en.append(f"To: {names_of(people, 'en')} (L{level})")
    return Text(f"[已恢复] {rule.name.zh}", "\n".join(x for x in zh if x), f"[resolved] {rule.name.en}",
                "\n".join(x for x in en if x), severity)


GATE_KIND_ZH = {"freshness": "数据未按时到达", "quality": "数据质量检查未通过", "rejected": "数据文件被拒收"}


def data_gate_message(table: str, gate: dict, held: list[str] = (), incomplete: list[str] = (),
                      event: str = "fired") -> Text:
    """A failing extract gate, for the data engineers (``alerting.data_gates``): fired or repeated.
    ``held``: rules held back (they fire on low values); ``incomplete``: rules that still fire,
    marked "data incomplete" (they fire on high values)."""
    kind_zh = GATE_KIND_ZH.get(gate["kind"], gate["kind"])
    again_zh, again_en = ("（仍未恢复）", " (still failing)") if event == "repeat" else ("", "")
    zh = [f"【数据问题】表 {table}：{kind_zh}{again_zh}", str(gate.get("detail", ""))]
    en = [f"[data problem] table {table}: {gate['kind']} gate failed{again_en}", str(gate.get("detail", ""))]
    if held:
        zh.append(f"依赖该表、按低值告警的规则暂停通知（{', '.join(held)}），以免把缺数当成下跌。")
        en.append(f"Rules that read it and fire on low values are held back ({', '.join(held)}): missing rows "
                  f"would look like a drop.")
    if incomplete:
        zh.append(f"按高值告警的规则照常通知，并标注“数据不完整”（{', '.join(incomplete)}）。")
        en.append(f"Rules that fire on high values still go out, marked \"data incomplete\" ({', '.join(incomplete)}).")
    zh.append("请检查抽取任务 storefence_extract_*。恢复后会通知一次。")
    en.append("Check the storefence_extract_* DAGs. You will be told once when it passes again.")
    return Text(f"[数据问题] {table} {gate['kind']}{again_zh}", "\n".join(zh), f"[data] {table} {gate['kind']}{again_en}",
                "\n".join(en), "yellow")


def data_gate_resolved_message(table: str, gate: dict) -> Text:
    kind = gate.get("kind", "")
    zh = f"【数据已恢复】表 {table}：{GATE_KIND_ZH.get(kind, kind)}问题已解除，暂停的规则恢复通知。"
    en = f"[data resolved] table {table}: the {kind} gate passes again; held-back rules notify again."
    return Text(f"[数据已恢复] {table} {kind}", zh, f"[data resolved] {table} {kind}", en, "yellow")


def data_incomplete_line(breaches: list[dict], lang: str) -> str | None:
    """The "data incomplete" line of an alert on a high value that reads a failing table."""
    notes = sorted({b["data_incomplete"] for b in breaches if b.get("data_incomplete")})
    if not notes:
        return None
    if lang == "zh":
        return f"⚠ 数据不完整：{'; '.join(notes)}。缺失的数据只会让数值偏低，此高值告警照常发送。"
    return f"⚠ Data incomplete: {'; '.join(notes)}. Missing rows can only make the value lower: this alert stands."


def evaluation_error_message(rule_id: str, evaluation: dict | None) -> Text:
    if evaluation is None:
        detail = "The check task ended without a result (killed or crashed before it could report). See its log."
        kind = "no result"
    else:
        err = evaluation.get("error", {})
        detail, kind = err.get("message", ""), err.get("kind", "error")
    return Text(f"[Storefence] {rule_id} 无法评估", f"【规则无法评估】{rule_id}（{kind}）\n{detail}\n这不是业务告警，是数据平台问题。",
                f"[Storefence] {rule_id}: not evaluated", f"[rule not evaluated] {rule_id} ({kind})\n{detail}\n"
                "Not a business alert: a problem of the data platform.", "yellow")


def task_failure_message(dag_id: str, task_id: str, run_id: str, error: str, log_url: str | None) -> Text:
    links = [("日志 / Log", log_url)] if log_url else []
    return Text(f"[任务失败] {dag_id}.{task_id}", f"【任务失败】{dag_id} / {task_id}\n运行：{run_id}\n错误：{error}",
                f"[task failed] {dag_id}.{task_id}", f"[task failed] {dag_id} / {task_id}\nrun: {run_id}\n"
                f"error: {error}", "yellow", links)


def action_message(rule, action, lines: list[dict], dry_run: bool) -> Text:
    """What an action did (or, in a dry run, would have done), for the people of the rule."""
    what = {"purchase_suggestion": ("建议采购单", "suggested purchase order"),
            "ads_pause": ("暂停投放请求", "ads pause request"),
            "cs_task": ("客服工单", "customer-service task")}[action.kind]
    mode_zh, mode_en = ("（演练，未发送）", " (dry run: not sent)") if dry_run else ("", "")
    zh = [f"【动作】{rule.name.zh}：{what[0]}{mode_zh}，{len(lines)} 项"]
    en = [f"[action] {rule.name.en}: {what[1]}{mode_en}, {len(lines)} line(s)"]
    for line in lines[:TOP]:
        txt = _action_line(line, action.kind)
        zh.append(f"- {txt}")
        en.append(f"- {txt}")
    return Text(zh[0], "\n".join(zh), en[0], "\n".join(en))


def _action_line(line: dict, kind: str) -> str:
    """One line of an action message: its entity as the small key (shop-01/douyin), not a dict,
    then what else it says; "would" the action itself is the head's already."""
    entity = line.get("entity")
    head = "/".join(str(v) for v in entity.values()) if isinstance(entity, dict) else entity
    rest = [f"{k}={v}" for k, v in line.items()
            if k not in ("fingerprint", "entity") and not (k == "would" and v == kind)]
    return ", ".join(str(x) for x in (head, *rest) if x)


def _entity_zh(entity: str, spaced: bool = False) -> str:
    word = {"sku": "SKU", "shop": "店铺", "brand": "品牌", "channel": "渠道", "warehouse": "仓库",
            "batch": "批次", "gateway": "支付通道"}.get(entity, entity)
    return f" {word}" if spaced and word.isascii() else word  # "2 个 SKU", "2 个店铺"


def entity_en(entity: str, n: int) -> str:
    """The entity word in English, in the number of ``n``: 1 SKU, 2 SKUs, 3 batches."""
    word = {"sku": "SKU", "gateway": "payment gateway"}.get(entity, entity)
    if n == 1:
        return word
    return word + ("es" if word.endswith(("ch", "sh", "s", "x")) else "s")
