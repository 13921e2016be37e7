// The alerts of the tab, grouped by domain, then by rule; both levels fold. The API sorts red
// first, then newest; groups come in the order of their first alert, so the groups holding red
// alerts come first, and each group keeps the API's order.
import { Badge, Box, Button, Checkbox, Code, Flex, Heading, Text } from "@chakra-ui/react";
import { useMemo, useState } from "react";

import { SEVERITIES, type AlertRow, type Severity } from "../api";
import { ruleName } from "../format";
import { domainName, useI18n, type Lang } from "../i18n";
import { AlertRowView, ROW_COLUMNS, isAckable, type RowActions } from "./AlertRowView";
import { SEVERITY_PALETTE } from "./badges";

interface RuleGroup {
  key: string;
  ruleId: string;
  ruleName: string;
  alerts: AlertRow[];
}

interface DomainGroup {
  domain: string;
  rules: RuleGroup[];
  count: number;
}

export function groupAlerts(alerts: AlertRow[], lang: Lang): DomainGroup[] {
  const domains = new Map<string, DomainGroup>();
  const rules = new Map<string, RuleGroup>();
  for (const alert of alerts) {
    let domain = domains.get(alert.domain);
    if (!domain) {
      domain = { domain: alert.domain, rules: [], count: 0 };
      domains.set(alert.domain, domain);
    }
    domain.count += 1;
    const key = `${alert.domain}\u0000${alert.rule_id}`;
    let rule = rules.get(key);
    if (!rule) {
      rule = { key, ruleId: alert.rule_id, ruleName: ruleName(alert, lang), alerts: [] };
      rules.set(key, rule);
      domain.rules.push(rule);
    }
    rule.alerts.push(alert);
  }
  return [...domains.values()];
}

const Chevron = ({ open }: { open: boolean }) => (
  <svg width="12" height="12" viewBox="0 0 12 12" aria-hidden="true" style={{ transform: open ? "rotate(90deg)" : undefined, transition: "transform 0.15s" }}>
    <path d="M4 2 L8 6 L4 10" fill="none" stroke="currentColor" strokeWidth="1.6" strokeLinecap="round" />
  </svg>
);

interface Props extends RowActions {
  alerts: AlertRow[];
  selected: ReadonlySet<string>;
}

export function AlertList({ alerts, selected, ...actions }: Props) {
  const { t, lang } = useI18n();
  const groups = useMemo(() => groupAlerts(alerts, lang), [alerts, lang]);
  const [folded, setFolded] = useState<ReadonlySet<string>>(new Set());
  const toggle = (key: string) =>
    setFolded((current) => {
      const next = new Set(current);
      if (!next.delete(key)) next.add(key);
      return next;
    });

  if (alerts.length === 0) {
    return (
      <Box py={10} textAlign="center" color="fg.muted" data-testid="alerts-empty">
        {t("list.empty")}
      </Box>
    );
  }

  return (
    <Flex direction="column" gap={4} data-testid="alert-list">
      {groups.map((domain) => {
        const domainKey = `domain:${domain.domain}`;
        const domainOpen = !folded.has(domainKey);
        return (
          <Box key={domain.domain} data-testid="domain-group" data-domain={domain.domain}>
            <Flex align="center" gap={2} mb={2}>
              <Button
                size="xs"
                variant="ghost"
                onClick={() => toggle(domainKey)}
                aria-expanded={domainOpen}
                aria-label={domainOpen ? t("group.collapse") : t("group.expand")}
                data-testid="domain-toggle"
                px={1}
              >
                <Chevron open={domainOpen} />
              </Button>
              <Heading size="md" as="h3">
                {domainName(lang, domain.domain)}
              </Heading>
              <Badge variant="subtle">{t("group.count", { n: domain.count })}</Badge>
            </Flex>
            {domainOpen ? (
              <Flex direction="column" gap={3}>
                {domain.rules.map((rule) => (
                  <RuleGroupView
                    key={rule.key}
                    rule={rule}
                    open={!folded.has(rule.key)}
                    onToggleOpen={() => toggle(rule.key)}
                    selected={selected}
                    {...actions}
                  />
                ))}
              </Flex>
            ) : null}
          </Box>
        );
      })}
    </Flex>
  );
}

interface RuleGroupProps extends RowActions {
  rule: RuleGroup;
  open: boolean;
  onToggleOpen: () => void;
  selected: ReadonlySet<string>;
}

function RuleGroupView({ rule, open, onToggleOpen, selected, ...actions }: RuleGroupProps) {
  const { t } = useI18n();
  const bySeverity = new Map<Severity, number>();
  for (const alert of rule.alerts) {
    if (alert.severity) bySeverity.set(alert.severity, (bySeverity.get(alert.severity) ?? 0) + 1);
  }
  const ackable = rule.alerts.filter(isAckable).map((a) => a.fingerprint);
  const picked = ackable.filter((fp) => selected.has(fp)).length;
  const groupChecked = picked === 0 ? false : picked === ackable.length ? true : "indeterminate";

  return (
    <Box
      borderWidth="1px"
      borderRadius="md"
      overflow="hidden"
      data-testid="rule-group"
      data-rule={rule.ruleId}
    >
      <Flex align="center" gap={2} px={2} py={1.5} bg="bg.muted" wrap="wrap">
        <Button
          size="xs"
          variant="ghost"
          onClick={onToggleOpen}
          aria-expanded={open}
          aria-label={open ? t("group.collapse") : t("group.expand")}
          data-testid="group-toggle"
          px={1}
        >
          <Chevron open={open} />
        </Button>
        {actions.canWrite && ackable.length > 0 ? (
          <Checkbox.Root
            size="sm"
            checked={groupChecked}
            onCheckedChange={(e) => actions.onToggle(ackable, e.checked === true)}
            data-testid="group-select"
          >
            <Checkbox.HiddenInput />
            <Checkbox.Control />
            <Checkbox.Label srOnly>{t("group.selectAll")}</Checkbox.Label>
          </Checkbox.Root>
        ) : null}
        <Text fontWeight="semibold" minW={0} overflowWrap="anywhere">
          {rule.ruleName}
        </Text>
        <Code size="sm" variant="plain" color="fg.muted" overflowWrap="anywhere" whiteSpace="normal">
          {rule.ruleId}
        </Code>
        <Flex gap={1} ms="auto" align="center">
          {SEVERITIES.filter((s) => bySeverity.has(s)).map((s) => (
            <Badge key={s} colorPalette={SEVERITY_PALETTE[s]} variant="subtle" title={t(`severity.${s}` as const)}>
              {bySeverity.get(s)}
            </Badge>
          ))}
          <Badge variant="outline">{t("group.count", { n: rule.alerts.length })}</Badge>
        </Flex>
      </Flex>
      {open ? (
        <Box p={{ base: 2, lg: 0 }} display="flex" flexDirection="column" gap={{ base: 2, lg: 0 }}>
          <Box
            display={{ base: "none", lg: "grid" }}
            gridTemplateColumns={ROW_COLUMNS}
            columnGap={3}
            px={3}
            py={1}
            fontSize="xs"
            color="fg.muted"
            borderBottomWidth="1px"
            borderLeftWidth="4px"
            borderLeftColor="transparent"
          >
            <span>{t("filter.severity")}</span>
            <span>
              {t("field.entity")} / {t("field.shop")}
            </span>
            <span>{t("field.value")}</span>
            <span>
              {t("field.started")} / {t("field.lastSeen")}
            </span>
            <span>{t("field.escalation")}</span>
            <span />
          </Box>
          {rule.alerts.map((alert) => (
            <AlertRowView key={alert.fingerprint} alert={alert} selected={selected.has(alert.fingerprint)} {...actions} />
          ))}
        </Box>
      ) : null}
    </Box>
  );
}
