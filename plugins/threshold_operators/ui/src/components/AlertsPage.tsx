// The page: header (updated at, refresh, language), counts, status tabs, filters, the grouped
// alert list or the silences, and the alert drawer and silence dialog on top. It owns the data
// loading (every 30 s and on Refresh) and the write actions (acknowledge, silence, expire).
import { Box, Button, Checkbox, Flex, Heading, Spinner, Text } from "@chakra-ui/react";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";

import {
  ApiError,
  api,
  isForbidden,
  type AlertRow,
  type AlertTab,
  type AlertsResponse,
  type Severity,
  type Silence,
  type SilenceMatchers,
} from "../api";
import { formatClock, formatTime } from "../format";
import { useLoader, useVisibleInterval } from "../hooks";
import { LANG_NAMES, useI18n } from "../i18n";
import { filtersOf, useViewState } from "../urlState";
import { AlertDetailDrawer } from "./AlertDetailDrawer";
import { AlertList } from "./AlertList";
import { isAckable } from "./AlertRowView";
import { CountsBar } from "./CountsBar";
import { Filters } from "./Filters";
import { Notice, type NoticeMessage } from "./Notice";
import { SilenceDialog } from "./SilenceDialog";
import { SilencesList } from "./SilencesList";
import { StatusTabs } from "./StatusTabs";

export const REFRESH_MS = 30_000;
export const PAGE_ROWS = 300;

const errorText = (error: unknown): string =>
  error instanceof ApiError ? error.detail || `HTTP ${error.status}` : error instanceof Error ? error.message : String(error);

export function AlertsPage() {
  const i18n = useI18n();
  const { t, locale, lang, setLang } = i18n;
  const control = useViewState();
  const { view, update, searchFor } = control;

  // --- data ---------------------------------------------------------------------------------------
  const [refresh, setRefresh] = useState(0);
  const reload = useCallback(() => setRefresh((n) => n + 1), []);
  useVisibleInterval(reload, REFRESH_MS);

  const me = useLoader("me", (signal) => api.me(signal));
  const canWrite = me.data?.can_write === true;

  const onSilencesTab = view.tab === "silences";
  const alertTab: AlertTab = view.tab === "silences" ? "firing" : view.tab;
  const filters = filtersOf(view);
  // On the silences tab only the counts are needed (for the tabs and the header).
  // A page of rows at a time (Airflow's own lists show 50): the counts are of every alert, and
  // "Show more" asks for the next page; a new view starts again from the first.
  const [rows, setRows] = useState(PAGE_ROWS);
  const query = onSilencesTab ? { ...filters, limit: 1 } : { ...filters, limit: rows };
  const alertsKey = JSON.stringify([alertTab, query]);
  const alerts = useLoader(alertsKey, (signal) => api.alerts(alertTab, query, signal), refresh);

  // Counts and facets stay on screen while another tab or filter loads.
  const lastAlerts = useRef<AlertsResponse | undefined>(undefined);
  if (alerts.data) lastAlerts.current = alerts.data;
  const shown = alerts.data ?? lastAlerts.current;

  const [showExpired, setShowExpired] = useState(false);
  const silences = useLoader(
    onSilencesTab ? `silences:${showExpired}` : null,
    (signal) => api.silences(showExpired, signal),
    refresh,
  );

  // --- selection ---------------------------------------------------------------------------------
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  useEffect(() => setSelected(new Set()), [alertsKey]);
  const viewKey = JSON.stringify([alertTab, filters]);
  useEffect(() => setRows(PAGE_ROWS), [viewKey]);
  const ackableNow = useMemo(
    () => new Set((alerts.data?.alerts ?? []).filter(isAckable).map((a) => a.fingerprint)),
    [alerts.data],
  );
  const selectedNow = [...selected].filter((fp) => ackableNow.has(fp));
  const toggle = useCallback((fingerprints: string[], on: boolean) => {
    setSelected((current) => {
      const next = new Set(current);
      for (const fp of fingerprints) {
        if (on) next.add(fp);
        else next.delete(fp);
      }
      return next;
    });
  }, []);

  // --- actions -----------------------------------------------------------------------------------
  const [notice, setNotice] = useState<NoticeMessage | null>(null);
  useEffect(() => {
    if (notice?.status !== "success") return undefined;
    const timer = setTimeout(() => setNotice(null), 8000);
    return () => clearTimeout(timer);
  }, [notice]);

  const failed = useCallback(
    (error: unknown) =>
      setNotice(
        isForbidden(error)
          ? { status: "error", title: t("msg.forbidden"), description: error.detail }
          : { status: "error", title: t("msg.error"), description: errorText(error) },
      ),
    [t],
  );

  const [busy, setBusy] = useState<ReadonlySet<string>>(new Set());
  const withBusy = useCallback(async (ids: string[], work: () => Promise<void>) => {
    setBusy((current) => new Set([...current, ...ids]));
    try {
      await work();
    } finally {
      setBusy((current) => new Set([...current].filter((id) => !ids.includes(id))));
    }
  }, []);

  const acknowledge = useCallback(
    (fingerprints: string[]) =>
      void withBusy(fingerprints, async () => {
        try {
          const result = await api.ack(fingerprints);
          const skipped = result.skipped ?? [];
          setNotice(
            skipped.length === 0
              ? { status: "success", title: t("msg.acked", { n: result.acknowledged.length }) }
              : {
                  status: "warning",
                  title: t("msg.acked", { n: result.acknowledged.length }),
                  description: t("msg.skipped", {
                    n: skipped.length,
                    reasons: [...new Set(skipped.map((s) => s.reason))].join("; "),
                  }),
                },
          );
          setSelected((current) => new Set([...current].filter((fp) => !fingerprints.includes(fp))));
        } catch (error) {
          failed(error);
        } finally {
          reload();
        }
      }),
    [withBusy, failed, reload, t],
  );

  const [silenceDraft, setSilenceDraft] = useState<SilenceMatchers | null>(null);
  const silenceFrom = useCallback(
    (alert: AlertRow) => setSilenceDraft({ rule: alert.rule_id, entity: alert.entity_key, shop: alert.shop }),
    [],
  );
  const silenceSaved = (silence: Silence) => {
    setSilenceDraft(null);
    setNotice({ status: "success", title: t("msg.silenceCreated", { time: formatTime(silence.ends_at, locale) }) });
    reload();
  };

  const expire = (silence: Silence) =>
    void withBusy([silence.id], async () => {
      try {
        await api.expireSilence(silence.id);
        setNotice({ status: "success", title: t("msg.silenceExpired") });
      } catch (error) {
        failed(error);
      } finally {
        reload();
      }
    });

  const detailSearch = useCallback((fingerprint: string) => searchFor({ alert: fingerprint }), [searchFor]);

  const pickSeverity = (severity: Severity) =>
    update({ severity: view.severity.length === 1 && view.severity[0] === severity ? [] : [severity] });

  const loadError = (onSilencesTab ? silences.error : undefined) ?? alerts.error;
  const other = lang === "zh" ? "en" : "zh";

  // --- layout ------------------------------------------------------------------------------------
  return (
    <Box p={{ base: 2, md: 4 }} w="100%" maxW="100%" minW={0} overflowX="clip" data-testid="storefence-page" data-lang={lang}>
      <Flex direction="column" gap={4}>
        <Flex align="center" justify="space-between" gap={2} wrap="wrap">
          <Heading size={{ base: "lg", md: "xl" }} as="h1">
            {t("title")}
          </Heading>
          <Flex align="center" gap={2} wrap="wrap">
            {shown ? (
              <Text
                fontSize="sm"
                color="fg.muted"
                data-testid="updated-at"
                data-updated-at={shown.updated_at}
                title={`${formatTime(shown.updated_at, locale)} · ${t("autoRefresh")}`}
              >
                {t("updatedAt", { time: formatClock(shown.updated_at, locale) })}
              </Text>
            ) : (
              <Text fontSize="sm" color="fg.muted">
                {t("notLoaded")}
              </Text>
            )}
            {alerts.loading || silences.loading ? <Spinner size="xs" data-testid="loading" /> : null}
            <Button size="sm" variant="outline" onClick={reload} data-testid="refresh">
              {t("refresh")}
            </Button>
            <Button
              size="sm"
              variant="ghost"
              onClick={() => setLang(other)}
              title={t("langSwitchTitle")}
              lang={other === "zh" ? "zh-CN" : "en"}
              data-testid="lang-switch"
              data-lang={lang}
            >
              {LANG_NAMES[other]}
            </Button>
          </Flex>
        </Flex>

        {me.data && !canWrite ? (
          <Text fontSize="sm" color="fg.muted" data-testid="read-only">
            {t("readOnly")}
          </Text>
        ) : null}

        {notice ? <Notice notice={notice} onClose={() => setNotice(null)} /> : null}
        {loadError && !(loadError instanceof ApiError && loadError.status === 401) ? (
          <Box data-testid="load-error">
            <Notice notice={{ status: "error", title: t("msg.error"), description: t("msg.loadFailed", { detail: errorText(loadError) }) }} />
          </Box>
        ) : null}

        {onSilencesTab ? null : (
          <CountsBar counts={alerts.data?.counts.by_severity} active={view.severity} onPick={pickSeverity} />
        )}

        <StatusTabs tab={view.tab} counts={shown?.counts.by_state} onChange={(tab) => update({ tab })} />

        {onSilencesTab ? (
          <Flex direction="column" gap={3}>
            <Flex gap={3} align="center" wrap="wrap">
              {canWrite ? (
                <Button
                  size="sm"
                  colorPalette="blue"
                  onClick={() => setSilenceDraft({ rule: "", entity: "*", shop: null })}
                  data-testid="silence-new"
                >
                  {t("action.newSilence")}
                </Button>
              ) : null}
              <Checkbox.Root
                size="sm"
                checked={showExpired}
                onCheckedChange={(e) => setShowExpired(e.checked === true)}
                data-testid="silences-show-expired"
              >
                <Checkbox.HiddenInput />
                <Checkbox.Control />
                <Checkbox.Label>{t("silences.showExpired")}</Checkbox.Label>
              </Checkbox.Root>
            </Flex>
            {silences.data ? (
              <SilencesList silences={silences.data} canWrite={canWrite} busy={busy} onExpire={expire} />
            ) : silences.loading ? (
              <Flex justify="center" py={10}>
                <Spinner aria-label={t("loading")} />
              </Flex>
            ) : null}
          </Flex>
        ) : (
          <Flex direction="column" gap={3}>
            <Filters {...control} facets={shown?.facets} />

            <Flex align="center" gap={2} wrap="wrap" minH={8}>
              {alerts.data ? (
                <Text fontSize="sm" color="fg.muted" data-testid="alerts-total" data-total={alerts.data.total}>
                  {t("list.total", { n: alerts.data.total })}
                </Text>
              ) : null}
              {canWrite && ackableNow.size > 0 ? (
                <Flex gap={2} ms="auto" wrap="wrap">
                  {selectedNow.length > 0 ? (
                    <Button size="sm" variant="ghost" onClick={() => setSelected(new Set())} data-testid="clear-selection">
                      {t("action.clearSelection")}
                    </Button>
                  ) : null}
                  <Button
                    size="sm"
                    colorPalette="blue"
                    disabled={selectedNow.length === 0}
                    loading={selectedNow.length > 0 && selectedNow.every((fp) => busy.has(fp))}
                    onClick={() => acknowledge(selectedNow)}
                    data-testid="ack-selected"
                    data-count={selectedNow.length}
                  >
                    {t("action.ackSelected", { n: selectedNow.length })}
                  </Button>
                </Flex>
              ) : null}
            </Flex>

            {alerts.data ? (
              <>
                <AlertList
                  alerts={alerts.data.alerts}
                  selected={selected}
                  canWrite={canWrite}
                  busy={busy}
                  onToggle={toggle}
                  onAck={acknowledge}
                  onSilence={silenceFrom}
                  detailSearch={detailSearch}
                />
                {alerts.data.truncated ? (
                  <Flex direction="column" align="center" gap={2}>
                    <Text fontSize="sm" color="fg.muted" textAlign="center" data-testid="alerts-truncated">
                      {t("list.truncated", { shown: alerts.data.alerts.length, total: alerts.data.total })}
                    </Text>
                    <Button size="sm" variant="outline" loading={alerts.loading}
                            onClick={() => setRows((n) => n + PAGE_ROWS)} data-testid="show-more">
                      {t("list.showMore", { n: Math.min(PAGE_ROWS, alerts.data.total - alerts.data.alerts.length) })}
                    </Button>
                  </Flex>
                ) : null}
              </>
            ) : alerts.loading ? (
              <Flex justify="center" py={10}>
                <Spinner aria-label={t("loading")} />
              </Flex>
            ) : null}
          </Flex>
        )}
      </Flex>

      <AlertDetailDrawer
        fingerprint={view.alert}
        refresh={refresh}
        canWrite={canWrite}
        busy={busy}
        onClose={() => update({ alert: null })}
        onAck={acknowledge}
        onSilence={silenceFrom}
      />
      <SilenceDialog initial={silenceDraft} onClose={() => setSilenceDraft(null)} onSaved={silenceSaved} />
    </Box>
  );
}
