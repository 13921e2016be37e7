// The silences: what each one matches, who made it and why, when it ends; Expire ends it now.
// Rows on wide screens, cards on narrow ones.
import { Badge, Box, Button, Code, Flex, Text } from "@chakra-ui/react";

import type { Silence } from "../api";
import { formatRelative, formatTime } from "../format";
import { useI18n } from "../i18n";

const STATE_PALETTE: Record<Silence["state"], string> = { pending: "yellow", active: "green", expired: "gray" };
const COLUMNS = "5.5rem minmax(7rem, 1.2fr) minmax(8rem, 1.5fr) 5rem minmax(8rem, 1.5fr) minmax(8rem, 1fr) 5.5rem";

interface Props {
  silences: Silence[];
  canWrite: boolean;
  busy: ReadonlySet<string>;
  onExpire: (silence: Silence) => void;
}

const CardLabel = ({ children }: { children: string }) => (
  <Text as="span" hideFrom="lg" fontSize="xs" color="fg.muted" me={1}>
    {children}
  </Text>
);

export function SilencesList({ silences, canWrite, busy, onExpire }: Props) {
  const { t, locale } = useI18n();
  if (silences.length === 0) {
    return (
      <Box py={10} textAlign="center" color="fg.muted" data-testid="silences-empty">
        {t("silences.empty")}
      </Box>
    );
  }
  const order = { active: 0, pending: 1, expired: 2 } as const;
  const sorted = [...silences].sort((a, b) => order[a.state] - order[b.state] || b.ends_at.localeCompare(a.ends_at));

  return (
    <Flex direction="column" gap={{ base: 2, lg: 0 }} data-testid="silences-list" borderWidth={{ base: 0, lg: "1px" }} borderRadius="md">
      <Box
        display={{ base: "none", lg: "grid" }}
        gridTemplateColumns={COLUMNS}
        columnGap={3}
        px={3}
        py={1.5}
        fontSize="xs"
        color="fg.muted"
        borderBottomWidth="1px"
        bg="bg.muted"
      >
        <span>{t("silences.state")}</span>
        <span>{t("silences.rule")}</span>
        <span>{t("silences.entity")}</span>
        <span>{t("silences.shop")}</span>
        <span>
          {t("silences.reason")} / {t("silences.author")}
        </span>
        <span>
          {t("silences.starts")} / {t("silences.ends")}
        </span>
        <span />
      </Box>
      {sorted.map((s) => (
        <Box
          key={s.id}
          data-testid="silence-row"
          data-silence-id={s.id}
          data-state={s.state}
          display={{ base: "flex", lg: "grid" }}
          flexDirection="column"
          gridTemplateColumns={COLUMNS}
          columnGap={3}
          rowGap={1}
          alignItems={{ lg: "center" }}
          px={3}
          py={2}
          borderWidth={{ base: "1px", lg: 0 }}
          borderBottomWidth="1px"
          borderRadius={{ base: "md", lg: "none" }}
          opacity={s.state === "expired" ? 0.7 : 1}
          fontSize="sm"
          minW={0}
        >
          <Box>
            <Badge colorPalette={STATE_PALETTE[s.state]} variant="subtle">
              {t(`silenceState.${s.state}` as const)}
            </Badge>
          </Box>
          <Box minW={0}>
            <CardLabel>{t("silences.rule")}</CardLabel>
            <Code size="sm" variant="plain" overflowWrap="anywhere" whiteSpace="normal">
              {s.rule}
            </Code>
          </Box>
          <Box minW={0}>
            <CardLabel>{t("silences.entity")}</CardLabel>
            <Code size="sm" variant="plain" overflowWrap="anywhere" whiteSpace="normal">
              {s.entity}
            </Code>
          </Box>
          <Box minW={0}>
            <CardLabel>{t("silences.shop")}</CardLabel>
            {s.shop ?? <Text as="span" color="fg.muted">{t("silences.anyShop")}</Text>}
          </Box>
          <Box minW={0} overflowWrap="anywhere">
            <Text>{s.reason}</Text>
            <Text fontSize="xs" color="fg.muted">
              {s.author}
            </Text>
          </Box>
          <Box minW={0} fontSize="xs">
            <Text title={formatTime(s.starts_at, locale)}>
              <Text as="span" color="fg.muted" me={1}>
                {t("silences.starts")}
              </Text>
              {formatTime(s.starts_at, locale)}
            </Text>
            <Text title={formatRelative(s.ends_at, locale)}>
              <Text as="span" color="fg.muted" me={1}>
                {t("silences.ends")}
              </Text>
              {formatTime(s.ends_at, locale)}
            </Text>
          </Box>
          <Flex justify={{ base: "flex-start", lg: "flex-end" }}>
            {canWrite && s.state !== "expired" ? (
              <Button
                size="xs"
                variant="outline"
                colorPalette="red"
                loading={busy.has(s.id)}
                onClick={() => onExpire(s)}
                data-testid="silence-expire"
              >
                {t("action.expire")}
              </Button>
            ) : null}
          </Flex>
        </Box>
      ))}
    </Flex>
  );
}
