// What the page shows lives in the URL's query string, so a link shows the same view:
//
//   ?tab=acknowledged&shop=shop-01&domain=inventory&rule=inventory.low_stock&severity=red&q=SKU-04
//   &alert=<fingerprint>    (the alert's detail drawer is open)
//
// Defaults (tab=firing, no filter) are left out. The host's router owns the URL, so this goes
// through React Router's search params (the host's ReactRouterDOM), which keeps other parameters.
import { useCallback, useMemo } from "react";
import { useSearchParams } from "react-router-dom";

import { ALERT_TABS, SEVERITIES, type AlertFilters, type AlertTab, type Severity } from "./api";

export type PageTab = AlertTab | "silences";
export const PAGE_TABS: readonly PageTab[] = [...ALERT_TABS, "silences"];

export interface ViewState {
  tab: PageTab;
  shop: string;
  domain: string;
  rule: string;
  severity: Severity[];
  q: string;
  /** The fingerprint of the alert whose detail is open. */
  alert: string | null;
}

const KEYS = ["tab", "shop", "domain", "rule", "severity", "q", "alert"] as const;

export function parseView(params: URLSearchParams): ViewState {
  const tab = params.get("tab") as PageTab | null;
  const severity = params
    .getAll("severity")
    .flatMap((s) => s.split(","))
    .filter((s): s is Severity => (SEVERITIES as readonly string[]).includes(s));
  return {
    tab: tab && PAGE_TABS.includes(tab) ? tab : "firing",
    shop: params.get("shop") ?? "",
    domain: params.get("domain") ?? "",
    rule: params.get("rule") ?? "",
    severity: [...new Set(severity)],
    q: params.get("q") ?? "",
    alert: params.get("alert") || null,
  };
}

/** `params` with the view's keys replaced by `view`'s (other parameters kept). */
export function writeView(params: URLSearchParams, view: ViewState): URLSearchParams {
  const next = new URLSearchParams(params);
  for (const key of KEYS) next.delete(key);
  if (view.tab !== "firing") next.set("tab", view.tab);
  if (view.shop) next.set("shop", view.shop);
  if (view.domain) next.set("domain", view.domain);
  if (view.rule) next.set("rule", view.rule);
  for (const severity of view.severity) next.append("severity", severity);
  if (view.q) next.set("q", view.q);
  if (view.alert) next.set("alert", view.alert);
  return next;
}

export function filtersOf(view: ViewState): AlertFilters {
  return {
    shop: view.shop || undefined,
    domain: view.domain || undefined,
    rule: view.rule || undefined,
    severity: view.severity.length > 0 ? view.severity : undefined,
    q: view.q.trim() || undefined,
  };
}

export const hasFilters = (view: ViewState): boolean =>
  Boolean(view.shop || view.domain || view.rule || view.severity.length > 0 || view.q);

export interface ViewControl {
  view: ViewState;
  /** Change part of the view; `replace` for typing in a filter (no history entry per key). */
  update: (patch: Partial<ViewState>, options?: { replace?: boolean }) => void;
  /** The query string ("?...") of the view with `patch` applied, for links. */
  searchFor: (patch: Partial<ViewState>) => string;
}

export function useViewState(): ViewControl {
  const [params, setParams] = useSearchParams();
  const view = useMemo(() => parseView(params), [params]);

  const update = useCallback(
    (patch: Partial<ViewState>, options?: { replace?: boolean }) => {
      setParams((current) => writeView(current, { ...parseView(current), ...patch }), {
        replace: options?.replace ?? false,
        preventScrollReset: true,
      });
    },
    [setParams],
  );

  const searchFor = useCallback(
    (patch: Partial<ViewState>) => {
      const search = writeView(params, { ...view, ...patch }).toString();
      return search ? `?${search}` : "";
    },
    [params, view],
  );

  return { view, update, searchFor };
}
