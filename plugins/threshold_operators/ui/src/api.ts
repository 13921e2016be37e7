// The typed client of the Storefence API (plugins/threshold_operators/api/app.py).
//
// Every call is same-origin and relative to document.baseURI, since Airflow may be served under a
// sub-path: new URL("storefence/api/...", document.baseURI). Authentication is the JWT that
// Airflow's login puts in the `_token` cookie, so fetch sends cookies (credentials: "same-origin").
// A 401 sends the browser to Airflow's login, which comes back here afterwards.

export type Severity = "red" | "yellow" | "blue";
export type AlertStatus = "firing" | "acknowledged" | "silenced" | "resolved";
/** The page's status tabs; `muted` lists the alerts a silence, an inhibition or quiet hours hold back. */
export type AlertTab = "firing" | "acknowledged" | "muted" | "resolved";

export const SEVERITIES: readonly Severity[] = ["red", "yellow", "blue"];
export const ALERT_TABS: readonly AlertTab[] = ["firing", "acknowledged", "muted", "resolved"];

export interface Me {
  user: string;
  can_write: boolean;
}

export interface AlertRow {
  fingerprint: string;
  rule_id: string;
  /** The rule's name (Chinese when the rule has one); `rule_names` has both, when the API sends them. */
  rule_name: string;
  rule_names?: Partial<Record<"zh" | "en", string>>;
  domain: string;
  entity_key: string;
  entity: Record<string, string>;
  shop: string | null;
  /** What people call the entity and its shop (the warehouse's products and shops), when known. */
  /** From the warehouse (engine/names.py); `*_en` where the English name differs (a glossary code, a batch). */
  entity_names?: { entity?: string; entity_en?: string; about?: string; about_en?: string; shop?: string } | null;
  status: AlertStatus;
  severity: Severity | null;
  metric: string | null;
  value: number | null;
  baseline: number | null;
  threshold: number | null;
  first_bucket: string;
  last_bucket: string;
  opened_at: string;
  updated_at: string;
  escalation_level: number;
  /** Who holds it, in each language (`heldBy` picks the page's): the acknowledger (the same text in
   * both), the people of its escalation level (routing.yaml names them in each), or that level's role. */
  held_by: Record<"zh" | "en", string> | null;
  acknowledged_by: string | null;
  acknowledged_at: string | null;
  resolved_at: string | null;
  muted: string | null;
  data_incomplete: string | null;
}

export interface AlertsResponse {
  updated_at: string;
  tab: AlertTab;
  total: number;
  truncated: boolean;
  counts: {
    by_state: Record<AlertTab, number>;
    by_severity: Record<Severity, number>;
  };
  facets: { shops: string[]; domains: string[]; rules: string[] };
  alerts: AlertRow[];
}

export interface AlertFilters {
  shop?: string;
  domain?: string;
  rule?: string;
  severity?: Severity[];
  q?: string;
  limit?: number;
}

export interface RuleInfo {
  id: string;
  name: string;
  names?: Partial<Record<"zh" | "en", string>>;
  description: string | null;
  domain: string;
  owner: string | null;
  file: string | null;
  line: number | null;
  runbook: string | null;
  /** The runbook and description in each language (a rule may give one text for both). */
  runbooks?: Partial<Record<"zh" | "en", string | null>>;
  descriptions?: Partial<Record<"zh" | "en", string | null>>;
}

export interface ChartPoint {
  bucket: string;
  state: "pending" | "firing" | "resolved";
  severity: string | null;
  value: number | null;
  baseline: number | null;
  threshold: number | null;
}

export interface NotificationRow {
  id: string | number;
  event: string;
  /** The message's title, when the API sends it. */
  title?: string | null;
  level: number | string | null;
  route: string | null;
  status: string;
  attempts: number;
  created_at: string | null;
  sent_at: string | null;
  last_error: string | null;
}

export interface TaskInstanceLink {
  dag_id: string;
  run_id: string;
  task_id: string;
  map_index: number;
  /** Relative to document.baseURI. */
  url: string;
}

export interface AlertDetail {
  alert: AlertRow;
  rule: RuleInfo;
  points: ChartPoint[];
  notifications: NotificationRow[];
  task_instance: TaskInstanceLink | null;
}

export interface AckResult {
  acknowledged: AlertRow[];
  skipped: { fingerprint: string; reason: string }[];
}

export interface SilenceMatchers {
  rule: string;
  entity: string;
  shop: string | null;
}

export interface SilenceInput extends SilenceMatchers {
  reason: string;
  /** "30m", "2h", "3d" */
  duration: string;
}

export interface Silence extends SilenceMatchers {
  id: string;
  author: string;
  reason: string;
  starts_at: string;
  ends_at: string;
  created_at: string | null;
  state: "pending" | "active" | "expired";
}

export interface SilencePreview {
  total: number;
  alerts: AlertRow[];
}

/** An answer other than 2xx; `detail` is the API's message (FastAPI's `detail`), when it gave one. */
export class ApiError extends Error {
  readonly status: number;
  readonly detail: string;

  constructor(status: number, detail: string) {
    super(detail || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

export const isForbidden = (error: unknown): error is ApiError =>
  error instanceof ApiError && error.status === 403;

export const isAbort = (error: unknown): boolean =>
  error instanceof DOMException && error.name === "AbortError";

/** The URL of an API path, e.g. apiUrl("alerts", {tab: "firing"}). */
export function apiUrl(path: string, query?: URLSearchParams): URL {
  const url = new URL(`storefence/api/${path}`, document.baseURI);
  if (query) url.search = query.toString();
  return url;
}

let redirecting = false;

/**
 * Airflow's login, as the host UI does it for its own 401s: `api/v2/auth/login` under the base
 * URL, which redirects to the configured auth manager's login page, with `next` = this page
 * (path, query and hash), so the user comes back to the same view.
 */
export function loginUrl(location: Location = window.location): string {
  const login = new URL("api/v2/auth/login", document.baseURI);
  const next = `${location.pathname}${location.search}${location.hash}`;
  return `${login.pathname}?${new URLSearchParams({ next }).toString()}`;
}

function goToLogin(): void {
  if (redirecting) return;
  redirecting = true;
  window.location.replace(loginUrl());
}

function detailOf(body: unknown): string {
  if (body && typeof body === "object" && "detail" in body) {
    const detail = (body as { detail: unknown }).detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      // FastAPI's validation errors: [{loc: [...], msg: "..."}]
      return detail
        .map((d) => {
          if (d && typeof d === "object" && "msg" in d) {
            const loc = Array.isArray(d.loc) ? d.loc.filter((p: unknown) => p !== "body").join(".") : "";
            return loc ? `${loc}: ${String(d.msg)}` : String(d.msg);
          }
          return String(d);
        })
        .join("; ");
    }
    if (detail != null) return JSON.stringify(detail);
  }
  return "";
}

interface RequestOptions {
  query?: URLSearchParams;
  body?: unknown;
  signal?: AbortSignal;
}

async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(apiUrl(path, options.query), {
    method,
    headers,
    credentials: "same-origin",
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: options.signal,
  });
  if (response.status === 401) {
    goToLogin();
    throw new ApiError(401, "login required");
  }
  const text = await response.text();
  let body: unknown = undefined;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
  }
  if (!response.ok) {
    throw new ApiError(response.status, detailOf(body) || response.statusText || text.slice(0, 200));
  }
  return body as T;
}

export function alertsQuery(tab: AlertTab, filters: AlertFilters): URLSearchParams {
  const query = new URLSearchParams({ tab });
  if (filters.shop) query.set("shop", filters.shop);
  if (filters.domain) query.set("domain", filters.domain);
  if (filters.rule) query.set("rule", filters.rule);
  for (const severity of filters.severity ?? []) query.append("severity", severity);
  if (filters.q) query.set("q", filters.q);
  if (filters.limit !== undefined) query.set("limit", String(filters.limit));
  return query;
}

export const api = {
  me: (signal?: AbortSignal) => request<Me>("GET", "me", { signal }),

  alerts: (tab: AlertTab, filters: AlertFilters, signal?: AbortSignal) =>
    request<AlertsResponse>("GET", "alerts", { query: alertsQuery(tab, filters), signal }),

  alert: (fingerprint: string, signal?: AbortSignal) =>
    request<AlertDetail>("GET", `alerts/${encodeURIComponent(fingerprint)}`, { signal }),

  ack: (fingerprints: string[]) => request<AckResult>("POST", "alerts/ack", { body: { fingerprints } }),

  previewSilence: (matchers: SilenceMatchers, signal?: AbortSignal) =>
    request<SilencePreview>("POST", "silences/preview", { body: matchers, signal }),

  /** The pending and active silences; the expired ones too with `includeExpired` (all=true). */
  silences: (includeExpired: boolean, signal?: AbortSignal) =>
    request<Silence[]>("GET", "silences", {
      query: includeExpired ? new URLSearchParams({ all: "true" }) : undefined,
      signal,
    }),

  createSilence: (silence: SilenceInput) => request<Silence>("POST", "silences", { body: silence }),

  expireSilence: (id: string) => request<Silence>("DELETE", `silences/${encodeURIComponent(id)}`),
};
