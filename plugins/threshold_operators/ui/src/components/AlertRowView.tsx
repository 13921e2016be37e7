// One alert: a grid row on wide screens, a card on narrow ones (below Chakra's `lg` breakpoint).
import { Box, Button, Checkbox, Flex, Link, Text } from "@chakra-ui/react";
import { memo } from "react";
import { Link as RouterLink } from "react-router-dom";

import type { AlertRow } from "../api";
import { entityLabel, formatNumber, formatRelative, formatTime, heldBy } from "../format";
import { useI18n } from "../i18n";
import { SEVERITY_PALETTE, SeverityBadge, StatusBadge } from "./badges";

/** The columns of the wide layout; AlertList's header row uses the same. */
export const ROW_COLUMNS =
  "8rem minmax(8rem, 2fr) minmax(7rem, 1.3fr) minmax(7rem, 1fr) minmax(7rem, 1.2fr) minmax(8.5rem, auto)";

export const isAckable = (alert: AlertRow): boolean => alert.status === "firing" || alert.status === "silenced";
export const isSilenceable = (alert: AlertRow): boolean => alert.status !== "resolved";

export interface RowActions {
  canWrite: boolean;
  /** Fingerprints being acknowledged right now. */
  busy: ReadonlySet<string>;
  onToggle: (fingerprints: string[], selected: boolean) => void;
  onAck: (fingerprints: string[]) => void;
  onSilence: (alert: AlertRow) => void;
  /** The query string that opens an alert's detail. */
  detailSearch: (fingerprint: string) => string;
}

interface Props extends RowActions {
  alert: AlertRow;
  selected: boolean;
}

/** A caption shown in the card layout only (the wide layout has a header row). */
const CardLabel = ({ children }: { children: string }) => (
  <Text as="span" hideFrom="lg" fontSize="xs" color="fg.muted" me={1}>
    {children}
  </Text>
);

/** The same row, drawn alike: a refresh re-draws only the rows whose alert changed (1,000 rows of
 * Chakra components take seconds to re-draw on a small machine). */
function sameRow(a: Props, b: Props): boolean {
  const x = a.alert;
  const y = b.alert;
  return (
    x.fingerprint === y.fingerprint && x.updated_at === y.updated_at && x.status === y.status &&
    x.severity === y.severity && x.muted === y.muted &&
    x.held_by?.zh === y.held_by?.zh && x.held_by?.en === y.held_by?.en &&  // a new object every refresh
    x.escalation_level === y.escalation_level && x.last_bucket === y.last_bucket && x.value === y.value &&
    a.selected === b.selected && a.canWrite === b.canWrite &&
    a.busy.has(x.fingerprint) === b.busy.has(y.fingerprint) && a.onToggle === b.onToggle && a.onAck === b.onAck &&
    a.onSilence === b.onSilence && a.detailSearch === b.detailSearch
  );
}

export const AlertRowView = memo(AlertRowViewInner, sameRow);

function AlertRowViewInner({ alert, selected, canWrite, busy, onToggle, onAck, onSilence, detailSearch }: Props) {
  const { t, locale, lang } = useI18n();
  const ackable = isAckable(alert);
  const names = alert.entity_names;
  // a glossary code or a batch has an English name; a name the shop wrote is the same in both
  const entityName = (lang === "en" && names?.entity_en) || names?.entity;
  const aboutName = (lang === "en" && names?.about_en) || names?.about;
  const holder = heldBy(alert, lang);
  const palette = alert.severity ? SEVERITY_PALETTE[alert.severity] : "gray";
  const hasNumbers = alert.value !== null || alert.baseline !== null || alert.threshold !== null;

  return (
    <Box
      data-testid="alert-row"
      data-fingerprint={alert.fingerprint}
      data-severity={alert.severity ?? "none"}
      data-status={alert.status}
      display={{ base: "flex", lg: "grid" }}
      flexDirection="column"
      gridTemplateColumns={ROW_COLUMNS}
      alignItems={{ base: "stretch", lg: "center" }}
      columnGap={3}
      rowGap={{ base: 1.5, lg: 1 }}
      px={3}
      py={2}
      borderWidth={{ base: "1px", lg: "0" }}
      borderBottomWidth="1px"
      borderLeftWidth="4px"
      borderLeftColor={`${palette}.solid`}
      borderRadius={{ base: "md", lg: "none" }}
      bg={selected ? "bg.emphasized" : "bg"}
      minW={0}
    >
      <Flex align="center" gap={2}>
        {canWrite ? (
          ackable ? <RowCheckbox alert={alert} selected={selected} onToggle={onToggle} /> : <Box w={4} flexShrink={0} />
        ) : null}
        <Flex direction={{ base: "row", lg: "column" }} align="flex-start" gap={1}>
          <SeverityBadge severity={alert.severity} />
          <StatusBadge status={alert.status} />
        </Flex>
      </Flex>

      <Box minW={0}>
        {entityName ? (
          <Text fontSize="sm" fontWeight="medium" data-testid="alert-name">
            {entityName}
            {aboutName ? (
              <Text as="span" fontSize="xs" color="fg.muted" fontWeight="normal">{` · ${aboutName}`}</Text>
            ) : null}
          </Text>
        ) : null}
        <Link asChild fontFamily="mono" fontSize="sm" fontWeight="medium" overflowWrap="anywhere">
          <RouterLink to={{ search: detailSearch(alert.fingerprint) }} data-testid="alert-link">
            {entityLabel(alert.entity, alert.entity_key)}
          </RouterLink>
        </Link>
        {alert.shop ? (
          <Text fontSize="xs" color="fg.muted" data-testid="alert-shop">
            <CardLabel>{t("field.shop")}</CardLabel>
            {alert.entity_names?.shop ? `${alert.entity_names.shop} (${alert.shop})` : alert.shop}
          </Text>
        ) : null}
      </Box>

      <Box minW={0} data-testid="alert-value">
        {hasNumbers ? (
          <>
            <Text fontSize="sm">
              <CardLabel>{t("field.value")}</CardLabel>
              <Text as="span" fontWeight="bold" color={`${palette}.fg`}>
                {formatNumber(alert.value, locale)}
              </Text>
              {alert.metric ? (
                <Text as="span" color="fg.muted" fontSize="xs" ms={1}>
                  {alert.metric}
                </Text>
              ) : null}
            </Text>
            <Text fontSize="xs" color="fg.muted">
              {t("field.baseline")} {formatNumber(alert.baseline, locale)} · {t("field.threshold")}{" "}
              {formatNumber(alert.threshold, locale)}
            </Text>
          </>
        ) : (
          <Text fontSize="sm" color="fg.muted">
            —
          </Text>
        )}
      </Box>

      <Box fontSize="sm" minW={0}>
        <Text title={formatTime(alert.opened_at, locale)} data-testid="alert-started">
          <Text as="span" fontSize="xs" color="fg.muted" me={1}>
            {t("field.started")}
          </Text>
          {formatRelative(alert.opened_at, locale)}
        </Text>
        <Text title={formatTime(alert.last_bucket, locale)} data-testid="alert-last-seen">
          <Text as="span" fontSize="xs" color="fg.muted" me={1}>
            {t("field.lastSeen")}
          </Text>
          {formatRelative(alert.last_bucket, locale)}
        </Text>
      </Box>

      <Box fontSize="sm" minW={0} data-testid="alert-escalation">
        <Text>
          <CardLabel>{t("field.escalation")}</CardLabel>
          {alert.escalation_level > 0 ? (
            <Text as="span" fontWeight="medium">
              {t("field.level", { n: alert.escalation_level })}
            </Text>
          ) : (
            <Text as="span" color="fg.muted">
              {t("field.notEscalated")}
            </Text>
          )}
        </Text>
        {holder ? (
          <Text fontSize="xs" color="fg.muted" data-testid="alert-held-by">
            {t("field.heldBy", { who: holder })}
          </Text>
        ) : null}
        {alert.acknowledged_by && !holder ? (
          <Text fontSize="xs" color="fg.muted">
            {t("field.acknowledgedBy", {
              who: alert.acknowledged_by,
              time: formatRelative(alert.acknowledged_at, locale),
            })}
          </Text>
        ) : null}
        {alert.resolved_at ? (
          <Text fontSize="xs" color="fg.muted">
            {t("field.resolvedAt", { time: formatRelative(alert.resolved_at, locale) })}
          </Text>
        ) : null}
      </Box>

      <Flex gap={1} wrap="wrap" justify={{ base: "flex-start", lg: "flex-end" }}>
        {canWrite && ackable ? (
          <Button
            size="xs"
            colorPalette="blue"
            loading={busy.has(alert.fingerprint)}
            onClick={() => onAck([alert.fingerprint])}
            data-testid="ack-button"
          >
            {t("action.ack")}
          </Button>
        ) : null}
        {canWrite && isSilenceable(alert) ? (
          <Button size="xs" variant="outline" onClick={() => onSilence(alert)} data-testid="silence-button">
            {t("action.silence")}
          </Button>
        ) : null}
        <Button size="xs" variant="ghost" asChild>
          <RouterLink to={{ search: detailSearch(alert.fingerprint) }} data-testid="details-link">
            {t("action.details")}
          </RouterLink>
        </Button>
      </Flex>

      {alert.muted || alert.data_incomplete ? (
        <Box gridColumn="1 / -1" fontSize="xs" ps={{ base: 0, lg: "8.75rem" }}>
          {alert.muted ? (
            <Text color="fg.muted" data-testid="alert-muted" overflowWrap="anywhere">
              <Text as="span" fontWeight="semibold" me={1}>
                {t("field.muted")}:
              </Text>
              {alert.muted}
            </Text>
          ) : null}
          {alert.data_incomplete ? (
            <Text color="orange.fg" data-testid="alert-data-incomplete" overflowWrap="anywhere">
              <Text as="span" fontWeight="semibold" me={1}>
                {t("field.dataIncomplete")}:
              </Text>
              {alert.data_incomplete}
            </Text>
          ) : null}
        </Box>
      ) : null}
    </Box>
  );
}

function RowCheckbox({
  alert,
  selected,
  onToggle,
}: {
  alert: AlertRow;
  selected: boolean;
  onToggle: RowActions["onToggle"];
}) {
  const { t } = useI18n();
  return (
    <Checkbox.Root
      size="sm"
      checked={selected}
      onCheckedChange={(e) => onToggle([alert.fingerprint], e.checked === true)}
      data-testid="alert-select"
    >
      <Checkbox.HiddenInput />
      <Checkbox.Control />
      <Checkbox.Label srOnly>{t("field.select")}</Checkbox.Label>
    </Checkbox.Root>
  );
}
