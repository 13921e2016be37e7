"""Metrics as people say them: a breach line shows the metric's label, its value in the rule's
format and unit, the threshold in the same unit, the baseline ("平时" / "usually") and the ratio to
it; never a raw column name nor more digits than the format allows (``metrics:`` of a rule)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from threshold_operators.alerting.messages import DIGITS, alert_message, resolved_message
from threshold_operators.engine.compile import threshold_of
from threshold_operators.rules.catalogue import load_catalogue

T = datetime(2026, 8, 16, 8, tzinfo=UTC)
WINDOW = ((T - timedelta(hours=1)).isoformat(), T.isoformat())
KEY = "shop_id=shop-01/sku=SKU-BEA-000419"


def rule_of(rule_id):
    return load_catalogue().get(rule_id).rule


def lines(rule, breach, severity="yellow") -> dict[str, str]:
    """The breach line of the message in each language."""
    text = alert_message(rule, "fired", severity, [{"entity_key": KEY, "severity": severity, **breach}], WINDOW,
                         1, ["李伟"])
    return {lang: next(x for x in body.split("\n") if x.startswith("- [")).split(f"{KEY}: ", 1)[1]
            for lang, body in (("zh", text.text), ("en", text.text_en))}


def realistic(rule, severity: str) -> dict:
    """A breach of the rule's primary condition as the engine describes it, with many digits."""
    cond = rule.primary
    form = rule.metric_label(cond.metric).format
    share = form == "percent"
    b = {"metric": cond.metric, "threshold": threshold_of(rule, severity), "fingerprint": "f" * 40}
    if cond.compare == "value":
        raw = 0.3141592 if share else 6.571428
        return {**b, "value": raw, "baseline": None, "metrics": {cond.metric: raw}}
    base = 0.0231234 if share else 11.933333
    raw = base * (0.41234 if cond.below is not None else 4.0223)
    if not share:
        raw = float(round(raw))
    value = 7.123456 if cond.compare == "poisson_tail" else raw / base
    return {**b, "value": value, "baseline": base, "metrics": {cond.metric: raw}}


@pytest.mark.parametrize("rule_id", sorted(load_catalogue().rules))
def test_every_catalogue_rule_says_its_metric_with_label_unit_and_format(rule_id):
    rule = rule_of(rule_id)
    spec = rule.metric_label(rule.primary.metric)
    assert spec is not None, f"{rule_id}: no metrics: entry for {rule.primary.metric}"
    severity = next(iter(rule.primary.thresholds(rule.severity)))
    columns = {*rule.measures, *rule.ratios, *rule.attributes, *rule.metric_labels}
    for lang, line in lines(rule, realistic(rule, severity), severity).items():
        label = spec.label.in_language(lang)
        assert line.startswith(label + " "), (lang, line)
        unit = "%" if spec.format == "percent" else spec.unit.in_language(lang) if spec.unit else ""
        assert unit in line, (lang, line)
        for column in columns:
            if column not in label:  # "orders" is its own English label
                assert not re.search(rf"\b{column}\b", line), f"{rule_id} {lang}: raw column {column}: {line}"
        for number in re.finditer(r"(×?)\d[\d,]*(?:\.(\d+))?", line):
            allowed = 2 if number.group(1) else DIGITS[spec.format]
            assert len(number.group(2) or "") <= allowed, f"{rule_id} {lang}: {number.group(0)} in {line}"
        assert "7.12" not in line  # a Poisson tail score is not in the metric's unit: said in words


def test_stock_cover_reads_as_days_against_the_threshold():
    rule = rule_of("inventory.stock_cover")
    said = lines(rule, {"metric": "cover_days", "value": 6.571428, "baseline": None, "threshold": 7.0,
                        "metrics": {"cover_days": 6.571428, "avg_14d": 3.5}})
    assert said == {"zh": "库存可售 6.6 天（阈值 7 天）", "en": "stock cover 6.6 days (threshold 7 days)"}
    text = alert_message(rule, "fired", "yellow", [{"entity_key": KEY, "severity": "yellow", "metric": "cover_days",
                                                    "value": 6.571428, "threshold": 7.0}], WINDOW, 1, ["李伟"])
    assert f"- [黄色] {KEY}: 库存可售 6.6 天（阈值 7 天）" in text.text.split("\n")
    assert f"- [yellow] {KEY}: stock cover 6.6 days (threshold 7 days)" in text.text_en.split("\n")


def test_an_alert_held_by_its_recovery_level_says_why_it_still_fires():
    """Past the threshold again but not past ``recover`` (the hysteresis): still firing, said so."""
    rule = rule_of("inventory.stock_cover")  # below {blue: 15, yellow: 7, red: 3}, recover: 20
    held = lines(rule, {"metric": "cover_days", "value": 12.0, "baseline": None, "threshold": 7.0,
                        "metrics": {"cover_days": 12.0}})
    assert held == {"zh": "库存可售 12.0 天（阈值 7 天），未回到恢复线 20 天，仍在预警",
                    "en": "stock cover 12.0 days (threshold 7 days), not yet back past the recovery level 20 days: "
                          "still firing"}
    spike = rule_of("finance.refund_rate")
    cond = spike.primary
    assert cond.compare == "ratio" and cond.recover is not None
    line = lines(spike, {"metric": cond.metric, "value": cond.recover + 0.1, "baseline": 0.02,
                         "threshold": threshold_of(spike, "yellow")})["en"]
    assert line.endswith(f"not yet back past the recovery level ×{cond.recover:g}: still firing"), line


def test_an_order_spike_reads_as_orders_against_usual_and_the_multiple():
    said = lines(rule_of("sales.order_spike"), {"metric": "orders", "value": 4.0, "baseline": 12.0, "threshold": 3.0,
                                                "metrics": {"orders": 48.0}}, "red")
    assert said == {"zh": "订单 48 单，平时 12 单，×4.0（阈值 ×3）", "en": "orders 48, usually 12, ×4.0 (threshold ×3)"}


def test_a_share_reads_in_percent():
    said = lines(rule_of("customer.logistics_stale"), {"metric": "stale_share", "value": 0.314159, "baseline": None,
                                                       "threshold": 0.05, "metrics": {"stale_share": 0.314159}})
    assert said == {"zh": "停滞占比 31.4%（阈值 5%）", "en": "stale parcels 31.4% (threshold 5%)"}


def test_a_ratio_of_a_rate_shows_the_rates_and_the_multiple():
    said = lines(rule_of("finance.refund_rate"), {"metric": "refund_rate", "value": 2.41, "baseline": 0.0123,
                                                  "threshold": 2.0, "metrics": {"refund_rate": 0.029643}})
    assert said == {"zh": "退款率 3.0%，平时 1.2%，×2.4（阈值 ×2）",
                    "en": "refund rate 3.0%, usually 1.2%, ×2.4 (threshold ×2)"}


def test_a_drop_shows_the_fraction_of_usual_with_two_decimals():
    said = lines(rule_of("sales.order_drop"), {"metric": "orders", "value": 0.4512, "baseline": 31.0,
                                               "threshold": 0.5, "metrics": {"orders": 14.0}})
    assert said == {"zh": "订单 14 单，平时 31 单，×0.45（阈值 ×0.5）",
                    "en": "orders 14, usually 31, ×0.45 (threshold ×0.5)"}


def test_a_poisson_tail_shows_the_count_and_usual_and_the_chance_in_words():
    said = lines(rule_of("customer.negative_review_burst"),
                 {"metric": "negative_reviews", "value": 7.123456, "baseline": 0.42857, "threshold": 4.75,
                  "metrics": {"negative_reviews": 9.0, "negative_share": 0.6}})
    assert said == {"zh": "差评 9 条，平时不到 1 条（远高于平时：偶然出现的概率低于 1/1,000,000）",
                    "en": "negative reviews 9, usually under 1 (far above usual: a chance below 1 in 1,000,000)"}


def test_a_zero_baseline_breach_has_no_multiple():
    said = lines(rule_of("sales.order_spike"), {"metric": "orders", "value": None, "baseline": 0.0, "threshold": 2.0,
                                                "metrics": {"orders": 5.0}})
    assert said == {"zh": "订单 5 单，平时 0 单（阈值 ×2）", "en": "orders 5, usually 0 (threshold ×2)"}


def test_a_rule_without_metrics_keeps_the_column_and_the_numbers():
    rule = rule_of("inventory.stock_cover").model_copy(update={"metric_labels": {}})
    said = lines(rule, {"metric": "cover_days", "value": 6.571428, "baseline": None, "threshold": 7.0})
    assert said == {"zh": "cover_days 6.571, 阈值 7", "en": "cover_days 6.571, threshold 7"}


@pytest.mark.parametrize(("compare", "value", "threshold", "zh", "en"), [
    ("pct_change", 62.345, 50.0, "订单 19 单，平时 12 单，+62.3%（阈值 +50%）", "orders 19, usually 12, +62.3% (threshold +50%)"),
    ("delta", 7.0, 3.0, "订单 19 单，平时 12 单，+7 单（阈值 +3 单）", "orders 19, usually 12, +7 (threshold +3)"),
    ("poisson_z", 6.3456, 6.0, "订单 19 单，平时 12 单，高出平时 6.3 个标准差（阈值 6）",
     "orders 19, usually 12, 6.3 standard deviations above usual (threshold 6)"),
])
def test_each_compare_kind_says_its_threshold_in_its_own_terms(compare, value, threshold, zh, en):
    rule = rule_of("sales.order_spike")
    rule = rule.model_copy(update={"conditions": [rule.primary.model_copy(update={"compare": compare})]})
    assert lines(rule, {"metric": "orders", "value": value, "baseline": 12.0, "threshold": threshold,
                        "metrics": {"orders": 19.0}}) == {"zh": zh, "en": en}


# --- the context to act, and the order -----------------------------------------------------------
def test_a_stock_line_carries_on_hand_in_transit_forecast_and_hours_left():
    """The seed's "仅够维持5小时销售": the stock rule's attributes, labelled, and the hours of sales left."""
    rule = rule_of("inventory.stock_cover")
    got = lines(rule, {"metric": "cover_days", "value": 0.2083, "threshold": 3.0, "metrics": {"cover_days": 0.2083},
                       "attributes": {"stock": 10, "in_transit": 0, "daily_forecast": 48.0, "supplier_id": "SUP-1"}},
                "red")
    assert got["zh"] == "库存可售 0.2 天（阈值 3 天）；现货 10 件，在途 0 件，日均预测 48.0 件，约 5 小时售罄"
    assert got["en"] == ("stock cover 0.2 days (threshold 3 days); on hand 10 units, in transit 0 units, "
                         "forecast a day 48.0 units, sold out in about 5 h")
    assert "SUP-1" not in got["zh"]  # a key without a label is not a fact to show
    long = lines(rule, {"metric": "cover_days", "value": 6.5, "threshold": 7.0, "metrics": {"cover_days": 6.5},
                        "attributes": {"stock": 130, "in_transit": 40, "daily_forecast": 20.0}})
    assert "小时" not in long["zh"] and "在途 40 件" in long["zh"]  # days say it beyond three days


def test_the_top_entities_come_worst_first_then_furthest_past_the_threshold():
    rule = rule_of("inventory.stock_cover")  # fires on low values: further past = lower cover
    breaches = [{"entity_key": f"shop_id=shop-01/sku={sku}", "severity": sev, "metric": "cover_days", "value": v,
                 "threshold": thr, "metrics": {"cover_days": v}, "fingerprint": sku}
                for sku, sev, v, thr in [("Y-NEAR", "yellow", 6.9, 7.0), ("R-NEAR", "red", 2.9, 3.0),
                                         ("Y-FAR", "yellow", 1.0, 7.0), ("R-FAR", "red", 0.1, 3.0)]]
    text = alert_message(rule, "fired", "red", breaches, WINDOW, 1, ["李伟"]).text
    shown = [x.split("sku=", 1)[1].split(":", 1)[0] for x in text.split("\n") if x.startswith("- [")]
    assert shown == ["R-FAR", "R-NEAR", "Y-FAR", "Y-NEAR"]
    spike = rule_of("sales.order_spike")  # fires on high values: further past = a larger multiple
    high = [{"entity_key": f"sku={k}", "severity": "red", "metric": "orders", "value": v, "baseline": 10.0,
             "threshold": 3.0, "metrics": {"orders": v * 10}} for k, v in [("X3", 3.5), ("X9", 9.0), ("X5", 5.0)]]
    text = alert_message(spike, "fired", "red", high, WINDOW, 1, ["李伟"]).text
    assert [x.split("sku=", 1)[1].split(":", 1)[0] for x in text.split("\n") if x.startswith("- [")] == [
        "X9", "X5", "X3"]


def test_an_english_message_names_the_entity_in_english_where_the_lookup_gave_it():
    """A gateway, a channel or a batch has an English name (``engine.names``): the English message
    says it; a name the shop wrote once (a product, a warehouse) is the same in both."""
    rule = rule_of("finance.payment_failure")
    breach = {"entity_key": "shop_id=shop-01/gateway=alipay", "severity": "yellow", "metric": "failure_rate",
              "value": 0.22, "threshold": 0.15, "metrics": {"failure_rate": 0.22},
              "names": {"entity": "支付宝", "entity_en": "Alipay", "shop": "Storefence 旗舰店"}}
    forms = alert_message(rule, "fired", "yellow", [breach], WINDOW, 1, ["李伟"]).forms
    assert (forms["zh"]["items"][0]["who"], forms["zh"]["items"][0]["short"]) == ("支付宝 shop-01/alipay", "支付宝")
    assert (forms["en"]["items"][0]["who"], forms["en"]["items"][0]["short"]) == ("Alipay shop-01/alipay", "Alipay")
    batch = {**breach, "entity_key": "shop_id=shop-01/batch_id=B-8",
             "names": {"entity": "女士针织开衫 M 等 2 款", "entity_en": "女士针织开衫 M and 1 more",
                       "about": "批次 · Brand C · clothing", "about_en": "batch · Brand C · clothing"}}
    en = alert_message(rule, "fired", "yellow", [batch], WINDOW, 1, ["李伟"]).forms["en"]["items"][0]
    assert en["who"] == "女士针织开衫 M and 1 more (batch · Brand C · clothing) shop-01/B-8"


def test_people_are_named_in_the_messages_language():
    """routing.yaml's ``name``: one text (both languages) or {zh, en}; English messages use en."""
    from threshold_operators.alerting.routing import load_routing
    from threshold_operators.rules.model import Localized

    li = load_routing().people["li.wei"].name
    assert (li.zh, li.en) == ("李伟 (运营主管)", "Li Wei (ops supervisor)")
    rule = rule_of("inventory.stock_cover")
    breach = {"entity_key": KEY, "severity": "yellow", "metric": "cover_days", "value": 6.5, "threshold": 7.0}
    text = alert_message(rule, "fired", "yellow", [breach], WINDOW, 2, [li, Localized.model_validate("周强")])
    assert "通知：李伟 (运营主管), 周强 (L2)" in text.text and "To: Li Wei (ops supervisor), 周强 (L2)" in text.text_en
    gone = resolved_message(rule, [KEY], WINDOW[1], 2, [li], "Asia/Shanghai", "yellow")
    assert "通知：李伟 (运营主管) (L2)" in gone.text and "To: Li Wei (ops supervisor) (L2)" in gone.text_en
