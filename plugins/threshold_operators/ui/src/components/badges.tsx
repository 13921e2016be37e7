// The small coloured labels used across the page.
import { Badge } from "@chakra-ui/react";

import type { AlertStatus, Severity } from "../api";
import { useI18n } from "../i18n";

export const SEVERITY_PALETTE: Record<Severity, string> = { red: "red", yellow: "yellow", blue: "blue" };

/** A CSS colour of the host's theme (follows dark mode), for the SVG chart and small swatches. */
export const themeColor = (token: string): string => `var(--chakra-colors-${token.replace(/\./g, "-")})`;

export function SeverityBadge({ severity }: { severity: Severity | null }) {
  const { t } = useI18n();
  return (
    <Badge
      colorPalette={severity ? SEVERITY_PALETTE[severity] : "gray"}
      variant="solid"
      minW="3.5rem"
      justifyContent="center"
      data-testid="severity-badge"
    >
      {severity ? t(`severity.${severity}` as const) : t("severity.none")}
    </Badge>
  );
}

const STATUS_PALETTE: Record<AlertStatus, string> = {
  firing: "red",
  acknowledged: "purple",
  silenced: "gray",
  resolved: "green",
};

export function StatusBadge({ status }: { status: AlertStatus }) {
  const { t } = useI18n();
  return (
    <Badge colorPalette={STATUS_PALETTE[status] ?? "gray"} variant="subtle" data-testid="status-badge">
      {t(`status.${status}` as const)}
    </Badge>
  );
}
