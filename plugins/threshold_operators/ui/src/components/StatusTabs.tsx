// The status tabs (with their counts, which ignore the tab) and the silences tab.
import { Badge, Tabs } from "@chakra-ui/react";

import type { AlertTab } from "../api";
import { useI18n } from "../i18n";
import { PAGE_TABS, type PageTab } from "../urlState";

interface Props {
  tab: PageTab;
  counts: Record<AlertTab, number> | undefined;
  onChange: (tab: PageTab) => void;
}

export function StatusTabs({ tab, counts, onChange }: Props) {
  const { t } = useI18n();
  return (
    <Tabs.Root value={tab} onValueChange={(e) => onChange(e.value as PageTab)} variant="line" size="sm">
      <Tabs.List overflowX="auto" overflowY="hidden" maxW="100%">
        {PAGE_TABS.map((value) => (
          <Tabs.Trigger key={value} value={value} data-testid={`tab-${value}`} whiteSpace="nowrap" flexShrink={0}>
            {t(`tab.${value}` as const)}
            {value !== "silences" && counts ? (
              <Badge
                variant={value === "firing" && counts.firing > 0 ? "solid" : "subtle"}
                colorPalette={value === "firing" && counts.firing > 0 ? "red" : "gray"}
                data-testid={`count-${value}`}
                data-count={counts[value]}
              >
                {counts[value]}
              </Badge>
            ) : null}
          </Tabs.Trigger>
        ))}
      </Tabs.List>
    </Tabs.Root>
  );
}
