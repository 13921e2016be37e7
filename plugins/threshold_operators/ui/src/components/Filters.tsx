// The filters of the alert list: shop, domain, rule, severity and a text on the entity. They live
// in the URL (urlState.ts); the text goes there once typing pauses.
import { Button, Field, Flex, Input, NativeSelect } from "@chakra-ui/react";
import { useEffect, useRef, useState } from "react";

import { SEVERITIES, type AlertsResponse, type Severity } from "../api";
import { useDebounced } from "../hooks";
import { domainName, useI18n } from "../i18n";
import { hasFilters, type ViewControl } from "../urlState";

interface SelectProps {
  label: string;
  testId: string;
  value: string;
  options: { value: string; label: string }[];
  onChange: (value: string) => void;
}

function FilterSelect({ label, testId, value, options, onChange }: SelectProps) {
  const { t } = useI18n();
  // A value from a link that the facets do not list (any more) stays selectable.
  const all = value && !options.some((o) => o.value === value) ? [...options, { value, label: value }] : options;
  return (
    <Field.Root flex={{ base: "1 1 45%", md: "0 1 12rem" }} minW={0}>
      <Field.Label fontSize="xs">{label}</Field.Label>
      <NativeSelect.Root size="sm">
        <NativeSelect.Field value={value} onChange={(e) => onChange(e.currentTarget.value)} data-testid={testId}>
          <option value="">{t("filter.all")}</option>
          {all.map((o) => (
            <option key={o.value} value={o.value}>
              {o.label}
            </option>
          ))}
        </NativeSelect.Field>
        <NativeSelect.Indicator />
      </NativeSelect.Root>
    </Field.Root>
  );
}

interface Props extends ViewControl {
  facets: AlertsResponse["facets"] | undefined;
}

export function Filters({ view, update, facets }: Props) {
  const { t, lang } = useI18n();
  const asOptions = (values: string[] | undefined) => (values ?? []).map((v) => ({ value: v, label: v }));

  // The text filter: typed here, written to the URL 300 ms after the last key.
  const [text, setText] = useState(view.q);
  const settled = useDebounced(text, 300);
  const committed = useRef(view.q);
  useEffect(() => {
    if (view.q !== committed.current) {
      committed.current = view.q; // changed from outside (a link, "clear filters", back button)
      setText(view.q);
    }
  }, [view.q]);
  useEffect(() => {
    if (settled !== committed.current) {
      committed.current = settled;
      update({ q: settled }, { replace: true });
    }
  }, [settled, update]);

  const severityOptions: { value: string; label: string }[] = SEVERITIES.map((s) => ({
    value: s,
    label: t(`severity.${s}` as const),
  }));
  if (view.severity.length > 1) {
    severityOptions.push({
      value: view.severity.join(","),
      label: t("filter.several", { list: view.severity.map((s) => t(`severity.${s}` as const)).join(", ") }),
    });
  }

  return (
    <Flex gap={2} wrap="wrap" align="flex-end">
      <FilterSelect
        label={t("filter.shop")}
        testId="filter-shop"
        value={view.shop}
        options={asOptions(facets?.shops)}
        onChange={(shop) => update({ shop })}
      />
      <FilterSelect
        label={t("filter.domain")}
        testId="filter-domain"
        value={view.domain}
        options={(facets?.domains ?? []).map((v) => ({ value: v, label: domainName(lang, v) }))}
        onChange={(domain) => update({ domain })}
      />
      <FilterSelect
        label={t("filter.rule")}
        testId="filter-rule"
        value={view.rule}
        options={asOptions(facets?.rules)}
        onChange={(rule) => update({ rule })}
      />
      <FilterSelect
        label={t("filter.severity")}
        testId="filter-severity"
        value={view.severity.join(",")}
        options={severityOptions}
        onChange={(value) => update({ severity: value ? (value.split(",") as Severity[]) : [] })}
      />
      <Field.Root flex={{ base: "1 1 100%", md: "1 1 14rem" }} minW={0}>
        <Field.Label fontSize="xs">{t("field.entity")}</Field.Label>
        <Input
          size="sm"
          type="search"
          value={text}
          placeholder={t("filter.q")}
          onChange={(e) => setText(e.currentTarget.value)}
          data-testid="filter-q"
        />
      </Field.Root>
      {hasFilters(view) ? (
        <Button
          size="sm"
          variant="ghost"
          onClick={() => {
            setText("");
            update({ shop: "", domain: "", rule: "", severity: [], q: "" });
          }}
          data-testid="filter-clear"
        >
          {t("filter.clear")}
        </Button>
      ) : null}
    </Flex>
  );
}
