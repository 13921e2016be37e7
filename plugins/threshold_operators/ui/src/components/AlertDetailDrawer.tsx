// An alert's detail, in a drawer opened by ?alert=<fingerprint> (so a link opens it): what it
// is, the chart of its metric, its notifications, and links to the Airflow task instance that
// evaluated it and to the rule's definition and runbook.
import {
  Box,
  Button,
  CloseButton,
  Code,
  Drawer,
  Flex,
  Grid,
  Heading,
  Link,
  Portal,
  Spinner,
  Text,
} from "@chakra-ui/react";
import type { ReactNode } from "react";

import { ApiError, api, type AlertDetail, type AlertRow } from "../api";
import { useLoader } from "../hooks";
import { formatNumber, formatRelative, formatTime, heldBy, ruleName } from "../format";
import { useI18n } from "../i18n";
import { isAckable, isSilenceable } from "./AlertRowView";
import { MetricChart } from "./MetricChart";
import { Notice } from "./Notice";
import { NotificationsTable } from "./NotificationsTable";
import { SeverityBadge, StatusBadge } from "./badges";

interface Props {
  fingerprint: string | null;
  refresh: number;
  canWrite: boolean;
  busy: ReadonlySet<string>;
  onClose: () => void;
  onAck: (fingerprints: string[]) => void;
  onSilence: (alert: AlertRow) => void;
}

export function AlertDetailDrawer({ fingerprint, refresh, canWrite, busy, onClose, onAck, onSilence }: Props) {
  const { t, lang } = useI18n();
  const detail = useLoader(fingerprint, (signal) => api.alert(fingerprint as string, signal), refresh);
  const notFound = detail.error instanceof ApiError && detail.error.status === 404;

  return (
    <Drawer.Root
      open={fingerprint !== null}
      onOpenChange={(e) => {
        if (!e.open) onClose();
      }}
      placement="end"
      size={{ base: "full", md: "lg" }}
      lazyMount
      unmountOnExit
    >
      <Portal>
        <Drawer.Backdrop />
        <Drawer.Positioner>
          <Drawer.Content data-testid="alert-detail" data-fingerprint={fingerprint ?? ""}>
            <Drawer.Header pe={12}>
              <Flex direction="column" gap={1} minW={0}>
                <Drawer.Title>{detail.data ? ruleName(detail.data.rule, lang) || ruleName(detail.data.alert, lang) : t("detail.title")}</Drawer.Title>
                {detail.data ? (
                  <Flex gap={2} align="center" wrap="wrap">
                    <SeverityBadge severity={detail.data.alert.severity} />
                    <StatusBadge status={detail.data.alert.status} />
                    <Code size="sm" variant="plain" color="fg.muted" overflowWrap="anywhere" whiteSpace="normal">
                      {detail.data.alert.rule_id}
                    </Code>
                  </Flex>
                ) : null}
              </Flex>
            </Drawer.Header>
            <Drawer.Body>
              {detail.data ? (
                <DetailBody
                  detail={detail.data}
                  canWrite={canWrite}
                  busy={busy}
                  onAck={onAck}
                  onSilence={onSilence}
                />
              ) : notFound ? (
                <Text color="fg.muted" data-testid="alert-detail-not-found">
                  {t("detail.notFound")}
                </Text>
              ) : detail.error ? (
                <Notice
                  notice={{
                    status: "error",
                    title: t("msg.error"),
                    description: t("msg.loadFailed", { detail: errorText(detail.error) }),
                  }}
                />
              ) : (
                <Flex justify="center" py={10}>
                  <Spinner aria-label={t("loading")} />
                </Flex>
              )}
            </Drawer.Body>
            <Drawer.CloseTrigger asChild>
              <CloseButton size="sm" aria-label={t("action.close")} data-testid="alert-detail-close" />
            </Drawer.CloseTrigger>
          </Drawer.Content>
        </Drawer.Positioner>
      </Portal>
    </Drawer.Root>
  );
}

const errorText = (error: unknown): string =>
  error instanceof ApiError ? error.detail || `HTTP ${error.status}` : error instanceof Error ? error.message : String(error);

function Item({ label, children, testId }: { label: string; children: ReactNode; testId?: string }) {
  return (
    <>
      <Text fontSize="sm" color="fg.muted">
        {label}
      </Text>
      <Box fontSize="sm" minW={0} overflowWrap="anywhere" data-testid={testId}>
        {children}
      </Box>
    </>
  );
}

const isWebLink = (text: string) => /^https?:\/\//i.test(text.trim());

interface BodyProps {
  detail: AlertDetail;
  canWrite: boolean;
  busy: ReadonlySet<string>;
  onAck: (fingerprints: string[]) => void;
  onSilence: (alert: AlertRow) => void;
}

function DetailBody({ detail, canWrite, busy, onAck, onSilence }: BodyProps) {
  const { t, locale, lang } = useI18n();
  const { alert, rule, points, notifications, task_instance: ti } = detail;
  const runbook = rule.runbooks?.[lang] ?? rule.runbook;  // the page's language, else the one text
  const description = rule.descriptions?.[lang] ?? rule.description;
  const holder = heldBy(alert, lang);
  const when = (iso: string | null) => (iso ? `${formatTime(iso, locale)} (${formatRelative(iso, locale)})` : "—");

  return (
    <Flex direction="column" gap={5}>
      {canWrite && (isAckable(alert) || isSilenceable(alert)) ? (
        <Flex gap={2} wrap="wrap">
          {isAckable(alert) ? (
            <Button
              size="sm"
              colorPalette="blue"
              loading={busy.has(alert.fingerprint)}
              onClick={() => onAck([alert.fingerprint])}
              data-testid="detail-ack-button"
            >
              {t("action.ack")}
            </Button>
          ) : null}
          {isSilenceable(alert) ? (
            <Button size="sm" variant="outline" onClick={() => onSilence(alert)} data-testid="detail-silence-button">
              {t("action.silence")}
            </Button>
          ) : null}
        </Flex>
      ) : null}

      <Grid templateColumns="minmax(6rem, max-content) minmax(0, 1fr)" columnGap={4} rowGap={1.5}>
        <Item label={t("field.entity")}>
          <Code variant="plain" fontSize="sm" overflowWrap="anywhere" whiteSpace="normal">
            {alert.entity_key}
          </Code>
        </Item>
        {alert.shop ? <Item label={t("field.shop")}>{alert.shop}</Item> : null}
        {alert.metric ? <Item label={t("detail.metric")}>{alert.metric}</Item> : null}
        <Item label={t("field.value")} testId="detail-value">
          <Text as="span" fontWeight="bold">
            {formatNumber(alert.value, locale)}
          </Text>
          <Text as="span" color="fg.muted">
            {" "}
            · {t("field.baseline")} {formatNumber(alert.baseline, locale)} · {t("field.threshold")}{" "}
            {formatNumber(alert.threshold, locale)}
          </Text>
        </Item>
        <Item label={t("field.started")}>{when(alert.opened_at)}</Item>
        <Item label={t("detail.firstBucket")}>{when(alert.first_bucket)}</Item>
        <Item label={t("field.lastSeen")}>{when(alert.last_bucket)}</Item>
        <Item label={t("field.escalation")} testId="detail-escalation">
          {alert.escalation_level > 0 ? t("field.level", { n: alert.escalation_level }) : t("field.notEscalated")}
          {holder ? ` · ${t("field.heldBy", { who: holder })}` : ""}
        </Item>
        {alert.acknowledged_by ? (
          <Item label={t("status.acknowledged")}>
            {t("field.acknowledgedBy", { who: alert.acknowledged_by, time: when(alert.acknowledged_at) })}
          </Item>
        ) : null}
        {alert.resolved_at ? <Item label={t("status.resolved")}>{when(alert.resolved_at)}</Item> : null}
        {alert.muted ? (
          <Item label={t("field.muted")} testId="detail-muted">
            {alert.muted}
          </Item>
        ) : null}
        {alert.data_incomplete ? (
          <Item label={t("field.dataIncomplete")}>
            <Text as="span" color="orange.fg">
              {alert.data_incomplete}
            </Text>
          </Item>
        ) : null}
        <Item label={t("detail.fingerprint")}>
          <Code variant="plain" fontSize="xs" overflowWrap="anywhere" whiteSpace="normal">
            {alert.fingerprint}
          </Code>
        </Item>
      </Grid>

      <Box>
        <Heading size="sm" mb={2}>
          {t("detail.chart")}
        </Heading>
        <MetricChart points={points} metric={alert.metric} />
      </Box>

      <Box>
        <Heading size="sm" mb={2}>
          {t("detail.rule")}
        </Heading>
        <Grid templateColumns="minmax(6rem, max-content) minmax(0, 1fr)" columnGap={4} rowGap={1.5}>
          <Item label={t("detail.rule")}>
            {ruleName(rule, lang)} <Code size="sm" variant="plain">{rule.id}</Code>
          </Item>
          {description ? <Item label="">{description}</Item> : null}
          {rule.owner ? <Item label={t("detail.owner")}>{rule.owner}</Item> : null}
          {rule.file ? (
            <Item label={t("detail.definedIn")} testId="rule-file">
              <Code variant="plain" fontSize="sm" overflowWrap="anywhere" whiteSpace="normal">
                {rule.line ? `${rule.file}:${rule.line}` : rule.file}
              </Code>
            </Item>
          ) : null}
          {runbook ? (
            <Item label={t("detail.runbook")} testId="rule-runbook">
              {isWebLink(runbook) ? (
                <Link href={runbook.trim()} target="_blank" rel="noopener noreferrer" colorPalette="blue" variant="underline">
                  {runbook}
                </Link>
              ) : (
                <Text whiteSpace="pre-wrap">{runbook}</Text>
              )}
            </Item>
          ) : null}
          {ti ? (
            <Item label={t("detail.taskInstance")}>
              <Link
                href={new URL(ti.url, document.baseURI).href}
                colorPalette="blue"
                variant="underline"
                data-testid="task-instance-link"
              >
                {ti.dag_id} / {ti.task_id}
                {ti.map_index >= 0 ? ` [${ti.map_index}]` : ""}
              </Link>
              <Text fontSize="xs" color="fg.muted">
                {ti.run_id}
              </Text>
            </Item>
          ) : null}
        </Grid>
      </Box>

      <Box>
        <Heading size="sm" mb={2}>
          {t("detail.notifications")}
        </Heading>
        <NotificationsTable notifications={notifications} />
      </Box>
    </Flex>
  );
}
