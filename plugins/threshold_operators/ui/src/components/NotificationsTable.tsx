// An alert's notifications: each message the alert produced (opened, escalated, resolved...),
// where it went and whether it was delivered. Scrolls sideways inside its own box on a phone.
import { Badge, Box, Table, Text } from "@chakra-ui/react";

import type { NotificationRow } from "../api";
import { formatTime } from "../format";
import { useI18n } from "../i18n";

const STATUS_PALETTE: Record<string, string> = { sent: "green", delivered: "green", failed: "red", pending: "yellow" };

export function NotificationsTable({ notifications }: { notifications: NotificationRow[] }) {
  const { t, locale } = useI18n();
  if (notifications.length === 0) {
    return (
      <Text color="fg.muted" fontSize="sm" data-testid="notifications-empty">
        {t("detail.noNotifications")}
      </Text>
    );
  }
  return (
    <Table.ScrollArea borderWidth="1px" borderRadius="md" maxW="100%">
      <Table.Root size="sm" data-testid="notifications-table">
        <Table.Header>
          <Table.Row>
            <Table.ColumnHeader>{t("notif.created")}</Table.ColumnHeader>
            <Table.ColumnHeader>{t("notif.event")}</Table.ColumnHeader>
            <Table.ColumnHeader>{t("notif.level")}</Table.ColumnHeader>
            <Table.ColumnHeader>{t("notif.route")}</Table.ColumnHeader>
            <Table.ColumnHeader>{t("notif.status")}</Table.ColumnHeader>
            <Table.ColumnHeader textAlign="end">{t("notif.attempts")}</Table.ColumnHeader>
            <Table.ColumnHeader>{t("notif.sent")}</Table.ColumnHeader>
            <Table.ColumnHeader>{t("notif.error")}</Table.ColumnHeader>
          </Table.Row>
        </Table.Header>
        <Table.Body>
          {notifications.map((n) => (
            <Table.Row key={String(n.id)} data-testid="notification-row" data-status={n.status}>
              <Table.Cell whiteSpace="nowrap">{formatTime(n.created_at, locale)}</Table.Cell>
              <Table.Cell>
                {n.event}
                {n.title ? (
                  <Text fontSize="xs" color="fg.muted" maxW="16rem" truncate title={n.title}>
                    {n.title}
                  </Text>
                ) : null}
              </Table.Cell>
              <Table.Cell>{n.level ?? "—"}</Table.Cell>
              <Table.Cell>{n.route ?? "—"}</Table.Cell>
              <Table.Cell>
                <Badge colorPalette={STATUS_PALETTE[n.status] ?? "gray"} variant="subtle">
                  {n.status}
                </Badge>
              </Table.Cell>
              <Table.Cell textAlign="end">{n.attempts}</Table.Cell>
              <Table.Cell whiteSpace="nowrap">{formatTime(n.sent_at, locale)}</Table.Cell>
              <Table.Cell maxW="16rem">
                {n.last_error ? (
                  <Box as="span" title={n.last_error} display="block" truncate color="red.fg">
                    {n.last_error}
                  </Box>
                ) : (
                  "—"
                )}
              </Table.Cell>
            </Table.Row>
          ))}
        </Table.Body>
      </Table.Root>
    </Table.ScrollArea>
  );
}
