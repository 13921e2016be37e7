// The counts by severity within the current tab; a click filters on that severity (again: all).
import { Box, Flex, Text } from "@chakra-ui/react";

import { SEVERITIES, type Severity } from "../api";
import { useI18n } from "../i18n";
import { SEVERITY_PALETTE } from "./badges";

interface Props {
  counts: Record<Severity, number> | undefined;
  active: Severity[];
  onPick: (severity: Severity) => void;
}

export function CountsBar({ counts, active, onPick }: Props) {
  const { t } = useI18n();
  return (
    <Flex gap={2} wrap="wrap" align="stretch" aria-label={t("bySeverity")} role="group">
      {SEVERITIES.map((severity) => {
        const palette = SEVERITY_PALETTE[severity];
        const n = counts?.[severity];
        const on = active.includes(severity);
        return (
          <Box
            as="button"
            key={severity}
            onClick={() => onPick(severity)}
            title={t("filterBySeverity", { severity: t(`severity.${severity}` as const) })}
            aria-pressed={on}
            colorPalette={palette}
            bg="colorPalette.subtle"
            color="colorPalette.fg"
            borderWidth="2px"
            borderColor={on ? "colorPalette.solid" : "transparent"}
            borderRadius="md"
            px={3}
            py={1.5}
            minW="6.5rem"
            textAlign="start"
            cursor="pointer"
            _hover={{ borderColor: "colorPalette.muted" }}
            data-testid={`count-box-${severity}`}
          >
            <Text fontSize="xs" fontWeight="medium">
              {t(`severity.${severity}` as const)}
            </Text>
            <Text fontSize="xl" fontWeight="bold" lineHeight="short" data-testid={`count-${severity}`} data-count={n ?? ""}>
              {n ?? "–"}
            </Text>
          </Box>
        );
      })}
    </Flex>
  );
}
