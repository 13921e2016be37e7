// Numbers, times and durations in the page's language. Times are shown in the browser's time zone;
// the full ISO time is in the element's title where it matters.
import type { I18n, Lang } from "./i18n";

const parse = (iso: string | null | undefined): Date | null => {
  if (!iso) return null;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
};

export function formatNumber(value: number | null | undefined, locale: string): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  const digits = Math.abs(value) >= 100 ? 0 : 2;
  return new Intl.NumberFormat(locale, { maximumFractionDigits: digits }).format(value);
}

/** "6 Dec, 16:05" (the year when it is not this year's). */
export function formatTime(iso: string | null | undefined, locale: string): string {
  const date = parse(iso);
  if (!date) return "—";
  const sameYear = date.getFullYear() === new Date().getFullYear();
  return new Intl.DateTimeFormat(locale, {
    year: sameYear ? undefined : "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  }).format(date);
}

/** "16:05:12": the time of day, for the page's "updated at". */
export function formatClock(iso: string | null | undefined, locale: string): string {
  const date = parse(iso);
  if (!date) return "—";
  return new Intl.DateTimeFormat(locale, {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  }).format(date);
}

const STEPS: [Intl.RelativeTimeFormatUnit, number][] = [
  ["second", 60],
  ["minute", 60],
  ["hour", 24],
  ["day", 7],
  ["week", 4.35],
  ["month", 12],
  ["year", Number.POSITIVE_INFINITY],
];

/** "5 minutes ago", "3 小时前". */
export function formatRelative(iso: string | null | undefined, locale: string, now: number = Date.now()): string {
  const date = parse(iso);
  if (!date) return "—";
  let amount = (date.getTime() - now) / 1000;
  for (const [unit, size] of STEPS) {
    if (Math.abs(amount) < size) {
      return new Intl.RelativeTimeFormat(locale, { numeric: "auto" }).format(Math.round(amount), unit);
    }
    amount /= size;
  }
  return formatTime(iso, locale);
}

export const DURATIONS = ["30m", "1h", "2h", "4h", "8h", "1d", "3d", "7d"] as const;

/** "2h" -> "2 h" / "2 小时". */
export function formatDuration(code: string, i18n: I18n): string {
  const match = /^(\d+)([mhdw])$/.exec(code);
  if (!match) return code;
  const unit = match[2] as "m" | "h" | "d" | "w";
  return i18n.t(`duration.${unit}`, { n: Number(match[1]) });
}

/** A rule's name in the page's language, when the API gave both. */
export function ruleName(
  item: { rule_name?: string; name?: string; rule_names?: Partial<Record<Lang, string>>; names?: Partial<Record<Lang, string>> },
  lang: Lang,
): string {
  return (item.rule_names ?? item.names)?.[lang] || item.rule_name || item.name || "";
}

/** Who holds an alert, in the page's language (null: nobody told yet). */
export function heldBy(alert: { held_by: Partial<Record<Lang, string>> | null }, lang: Lang): string | null {
  return alert.held_by?.[lang] || alert.held_by?.zh || null;
}

/** The entity without the shop, which has a column of its own: "sku=SKU-BEA-000419". */
export function entityLabel(entity: Record<string, string>, entityKey: string): string {
  const parts = Object.entries(entity ?? {})
    .filter(([key]) => key !== "shop_id")
    .map(([key, value]) => `${key}=${value}`);
  return parts.length > 0 ? parts.join(" / ") : entityKey;
}
