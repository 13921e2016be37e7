// Every label of the page, in English and Chinese.
//
// The starting language is Airflow's own (localStorage "i18nextLng": zh* -> zh, anything else ->
// en); the switch on the page changes it for this page only, remembered (localStorage
// "storefence.alerts.lang") until Airflow's own language changes. `zh` is typed as a record of the
// same keys as `en`, so a label missing in one language does not compile. `{name}` in a label is
// replaced by t(key, {name: ...}); `{name:s}` is "s" unless that number is 1 (English plurals).
import { createContext, useContext } from "react";

export type Lang = "en" | "zh";

const en = {
  title: "Storefence alerts",
  updatedAt: "Updated {time}",
  notLoaded: "Not loaded yet",
  refresh: "Refresh",
  autoRefresh: "Refreshes every 30 s",
  langSwitchTitle: "Language",
  signedInAs: "Signed in as {user}",
  readOnly: "Read-only: you may look at alerts and silences but not change them.",
  loading: "Loading…",

  "tab.firing": "Firing",
  "tab.acknowledged": "Acknowledged",
  "tab.muted": "Silenced or inhibited",
  "tab.resolved": "Resolved",
  "tab.silences": "Silences",

  "severity.red": "Red",
  "severity.yellow": "Yellow",
  "severity.blue": "Blue",
  "severity.none": "No severity",
  bySeverity: "In this tab, by severity",
  filterBySeverity: "Show only {severity}",

  "status.firing": "Firing",
  "status.acknowledged": "Acknowledged",
  "status.silenced": "Silenced",
  "status.resolved": "Resolved",

  "filter.shop": "Shop",
  "filter.domain": "Domain",
  "filter.rule": "Rule",
  "filter.severity": "Severity",
  "filter.q": "Entity contains…",
  "filter.all": "All",
  "filter.several": "Several: {list}",
  "filter.clear": "Clear filters",

  "list.empty": "No alerts here.",
  "list.total": "{n} alert{n:s}",
  "list.truncated": "Showing the first {shown} of {total}: narrow the filters, or show more.",
  "list.showMore": "Show {n} more",
  "group.expand": "Expand",
  "group.collapse": "Collapse",
  "group.selectAll": "Select every alert of this group",
  "group.count": "{n} alert{n:s}",

  "field.entity": "Entity",
  "field.shop": "Shop",
  "field.value": "Value",
  "field.baseline": "baseline",
  "field.threshold": "threshold",
  "field.started": "Started",
  "field.lastSeen": "Last seen",
  "field.escalation": "Escalation",
  "field.level": "L{n}",
  "field.notEscalated": "not notified yet",
  "field.heldBy": "held by {who}",
  "field.muted": "Muted",
  "field.dataIncomplete": "Data incomplete",
  "field.acknowledgedBy": "Acknowledged by {who}, {time}",
  "field.resolvedAt": "Resolved {time}",
  "field.select": "Select this alert",

  "action.ack": "Acknowledge",
  "action.ackSelected": "Acknowledge selected ({n})",
  "action.clearSelection": "Clear selection",
  "action.silence": "Silence…",
  "action.details": "Details",
  "action.newSilence": "New silence",
  "action.expire": "Expire",
  "action.cancel": "Cancel",
  "action.save": "Save silence",
  "action.close": "Close",
  "action.dismiss": "Dismiss",

  "msg.acked": "Acknowledged {n} alert(s).",
  "msg.skipped": "Not acknowledged ({n}): {reasons}",
  "msg.forbidden": "Not allowed",
  "msg.error": "Something went wrong",
  "msg.loadFailed": "Could not load the data: {detail}",
  "msg.silenceCreated": "Silence saved, until {time}.",
  "msg.silenceExpired": "Silence expired.",

  "silence.title": "New silence",
  "silence.rule": "Rule (glob on the rule id)",
  "silence.ruleHelp": "e.g. inventory.low_stock, inventory.* — * for every rule",
  "silence.entity": "Entity (glob on the entity key)",
  "silence.entityHelp": "e.g. shop_id=shop-01/sku=SKU-0042, *sku=SKU-0042* — * for every entity",
  "silence.shop": "Shop",
  "silence.shopHelp": "Empty: every shop",
  "silence.duration": "Duration",
  "silence.reason": "Reason",
  "silence.reasonPlaceholder": "Why these alerts may be ignored for a while",
  "silence.preview": "It would mute {n} active alert(s):",
  "silence.previewNone": "It matches no active alert right now.",
  "silence.previewMore": "…and {n} more",
  "silence.previewChecking": "Checking which alerts it matches…",
  "silence.needRule": "Give a rule pattern.",

  "silences.empty": "No silences.",
  "silences.rule": "Rule",
  "silences.entity": "Entity",
  "silences.shop": "Shop",
  "silences.author": "Author",
  "silences.reason": "Reason",
  "silences.starts": "Starts",
  "silences.ends": "Ends",
  "silences.state": "State",
  "silences.anyShop": "any",
  "silences.showExpired": "Show expired silences",
  "silenceState.pending": "Pending",
  "silenceState.active": "Active",
  "silenceState.expired": "Expired",

  "detail.title": "Alert",
  "detail.fingerprint": "Fingerprint",
  "detail.notFound": "This alert does not exist (any more).",
  "detail.chart": "Value, baseline and threshold",
  "detail.noPoints": "No data points.",
  "detail.notifications": "Notifications",
  "detail.noNotifications": "No notifications.",
  "detail.taskInstance": "Task instance in Airflow",
  "detail.rule": "Rule",
  "detail.definedIn": "Defined in",
  "detail.runbook": "Runbook",
  "detail.owner": "Owner",
  "detail.metric": "Metric",
  "detail.firstBucket": "Breach began (data time)",

  "notif.event": "Event",
  "notif.level": "Level",
  "notif.route": "Route",
  "notif.status": "Status",
  "notif.attempts": "Attempts",
  "notif.created": "Created",
  "notif.sent": "Sent",
  "notif.error": "Last error",

  "chart.value": "Value",
  "chart.baseline": "Baseline",
  "chart.threshold": "Threshold",
  "chart.firing": "Firing",
  "chart.label": "{metric} over time",

  "duration.m": "{n} min",
  "duration.h": "{n} h",
  "duration.d": "{n} d",
  "duration.w": "{n} wk",
};

export type MessageKey = keyof typeof en;

const zh: Record<MessageKey, string> = {
  title: "Storefence 告警",
  updatedAt: "更新于 {time}",
  notLoaded: "尚未加载",
  refresh: "刷新",
  autoRefresh: "每 30 秒自动刷新",
  langSwitchTitle: "语言",
  signedInAs: "当前用户：{user}",
  readOnly: "只读：你可以查看告警和静默规则，但不能修改。",
  loading: "加载中…",

  "tab.firing": "触发中",
  "tab.acknowledged": "已确认",
  "tab.muted": "已静默或抑制",
  "tab.resolved": "已恢复",
  "tab.silences": "静默规则",

  "severity.red": "红色",
  "severity.yellow": "黄色",
  "severity.blue": "蓝色",
  "severity.none": "无级别",
  bySeverity: "本标签页按级别统计",
  filterBySeverity: "只看{severity}",

  "status.firing": "触发中",
  "status.acknowledged": "已确认",
  "status.silenced": "已静默",
  "status.resolved": "已恢复",

  "filter.shop": "店铺",
  "filter.domain": "领域",
  "filter.rule": "规则",
  "filter.severity": "级别",
  "filter.q": "实体包含…",
  "filter.all": "全部",
  "filter.several": "多个：{list}",
  "filter.clear": "清除筛选",

  "list.empty": "这里没有告警。",
  "list.total": "{n} 条告警",
  "list.truncated": "只显示了 {total} 条中的前 {shown} 条：可缩小筛选范围，或显示更多。",
  "list.showMore": "再显示 {n} 条",
  "group.expand": "展开",
  "group.collapse": "收起",
  "group.selectAll": "选中本组全部告警",
  "group.count": "{n} 条",

  "field.entity": "实体",
  "field.shop": "店铺",
  "field.value": "当前值",
  "field.baseline": "基线",
  "field.threshold": "阈值",
  "field.started": "开始于",
  "field.lastSeen": "最近一次",
  "field.escalation": "升级",
  "field.level": "L{n}",
  "field.notEscalated": "尚未通知",
  "field.heldBy": "处理人：{who}",
  "field.muted": "屏蔽原因",
  "field.dataIncomplete": "数据不完整",
  "field.acknowledgedBy": "{who} 已确认，{time}",
  "field.resolvedAt": "恢复于 {time}",
  "field.select": "选中此告警",

  "action.ack": "确认",
  "action.ackSelected": "确认所选（{n}）",
  "action.clearSelection": "取消选择",
  "action.silence": "静默…",
  "action.details": "详情",
  "action.newSilence": "新建静默",
  "action.expire": "使失效",
  "action.cancel": "取消",
  "action.save": "保存静默",
  "action.close": "关闭",
  "action.dismiss": "关闭提示",

  "msg.acked": "已确认 {n} 条告警。",
  "msg.skipped": "未确认（{n} 条）：{reasons}",
  "msg.forbidden": "没有权限",
  "msg.error": "出错了",
  "msg.loadFailed": "数据加载失败：{detail}",
  "msg.silenceCreated": "静默已保存，有效期至 {time}。",
  "msg.silenceExpired": "静默已失效。",

  "silence.title": "新建静默",
  "silence.rule": "规则（按规则 ID 通配）",
  "silence.ruleHelp": "例如 inventory.low_stock、inventory.*；* 表示所有规则",
  "silence.entity": "实体（按实体键通配）",
  "silence.entityHelp": "例如 shop_id=shop-01/sku=SKU-0042、*sku=SKU-0042*；* 表示所有实体",
  "silence.shop": "店铺",
  "silence.shopHelp": "留空表示所有店铺",
  "silence.duration": "时长",
  "silence.reason": "原因",
  "silence.reasonPlaceholder": "为什么这段时间可以忽略这些告警",
  "silence.preview": "将屏蔽 {n} 条活动告警：",
  "silence.previewNone": "目前不匹配任何活动告警。",
  "silence.previewMore": "……另有 {n} 条",
  "silence.previewChecking": "正在检查会匹配哪些告警…",
  "silence.needRule": "请填写规则通配。",

  "silences.empty": "没有静默规则。",
  "silences.rule": "规则",
  "silences.entity": "实体",
  "silences.shop": "店铺",
  "silences.author": "创建人",
  "silences.reason": "原因",
  "silences.starts": "开始",
  "silences.ends": "结束",
  "silences.state": "状态",
  "silences.anyShop": "任意",
  "silences.showExpired": "显示已失效的静默",
  "silenceState.pending": "未开始",
  "silenceState.active": "生效中",
  "silenceState.expired": "已失效",

  "detail.title": "告警详情",
  "detail.fingerprint": "指纹",
  "detail.notFound": "该告警不存在（或已不存在）。",
  "detail.chart": "当前值、基线与阈值",
  "detail.noPoints": "没有数据点。",
  "detail.notifications": "通知记录",
  "detail.noNotifications": "没有通知。",
  "detail.taskInstance": "Airflow 中的任务实例",
  "detail.rule": "规则",
  "detail.definedIn": "定义位置",
  "detail.runbook": "处置手册",
  "detail.owner": "负责人",
  "detail.metric": "指标",
  "detail.firstBucket": "异常开始（数据时间）",

  "notif.event": "事件",
  "notif.level": "层级",
  "notif.route": "渠道",
  "notif.status": "状态",
  "notif.attempts": "尝试次数",
  "notif.created": "创建时间",
  "notif.sent": "发送时间",
  "notif.error": "最近错误",

  "chart.value": "当前值",
  "chart.baseline": "基线",
  "chart.threshold": "阈值",
  "chart.firing": "触发区间",
  "chart.label": "{metric} 随时间变化",

  "duration.m": "{n} 分钟",
  "duration.h": "{n} 小时",
  "duration.d": "{n} 天",
  "duration.w": "{n} 周",
};

export const MESSAGES: Record<Lang, Record<MessageKey, string>> = { en, zh };

/** The name of each language in itself, for the switch. */
export const LANG_NAMES: Record<Lang, string> = { en: "English", zh: "中文" };

export const LOCALES: Record<Lang, string> = { en: "en-GB", zh: "zh-CN" };

export function langOf(tag: string | null | undefined): Lang {
  return tag?.toLowerCase().startsWith("zh") ? "zh" : "en";
}

// The switch's choice, kept in localStorage with the Airflow language it was made under: Airflow
// mounts the page again on every navigation inside it (a row's Details) and on a reload.
const LANG_KEY = "storefence.alerts.lang";

interface SavedLang {
  lang: Lang;
  airflow: string | null; // Airflow's "i18nextLng" when the switch was used
}

/** The switch's last choice, while Airflow's language is still the one it was made under; else
 *  Airflow's language (its i18next setting in localStorage), as this page's zh or en. */
export function initialLang(): Lang {
  try {
    const airflow = globalThis.localStorage?.getItem("i18nextLng") ?? null;
    let saved: Partial<SavedLang> | null = null;
    try {
      saved = JSON.parse(globalThis.localStorage?.getItem(LANG_KEY) ?? "null") as Partial<SavedLang> | null;
    } catch {
      // not ours (not JSON): ignored
    }
    if ((saved?.lang === "en" || saved?.lang === "zh") && saved.airflow === airflow) return saved.lang;
    return langOf(airflow);
  } catch {
    return "en"; // storage blocked
  }
}

/** Remember the switch's choice for the next mount (storage blocked: for this mount only). */
export function saveLang(lang: Lang): void {
  try {
    const airflow = globalThis.localStorage?.getItem("i18nextLng") ?? null;
    globalThis.localStorage?.setItem(LANG_KEY, JSON.stringify({ lang, airflow } satisfies SavedLang));
  } catch {
    // storage blocked
  }
}

export type Vars = Record<string, string | number>;

/** A rule domain's name in `lang` (the catalogue's domains; another one as it is). */
const DOMAINS: Record<Lang, Record<string, string>> = {
  en: { sales: "Sales", inventory: "Inventory", customer: "Customer experience", traffic: "Traffic and conversion",
        finance: "Finance", compound: "Compound", data_gate: "Data gates" },
  zh: { sales: "销售", inventory: "库存", customer: "客户体验", traffic: "流量与转化", finance: "财务",
        compound: "组合告警", data_gate: "数据门禁" },
};

export function domainName(lang: Lang, domain: string): string {
  return DOMAINS[lang][domain] ?? domain;
}

export function translate(lang: Lang, key: MessageKey, vars?: Vars): string {
  const text = MESSAGES[lang][key];
  if (!vars) return text;
  return text
    .replace(/\{(\w+):(\w+)\}/g, (whole, name: string, suffix: string) =>
      name in vars ? (Number(vars[name]) === 1 ? "" : suffix) : whole)
    .replace(/\{(\w+)\}/g, (whole, name: string) => (name in vars ? String(vars[name]) : whole));
}

export interface I18n {
  lang: Lang;
  locale: string;
  t: (key: MessageKey, vars?: Vars) => string;
  setLang: (lang: Lang) => void;
}

export function makeI18n(lang: Lang, setLang: (lang: Lang) => void): I18n {
  return { lang, locale: LOCALES[lang], t: (key, vars) => translate(lang, key, vars), setLang };
}

export const I18nContext = createContext<I18n>(makeI18n("en", () => undefined));

export const useI18n = (): I18n => useContext(I18nContext);
