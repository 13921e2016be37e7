// The form that creates a silence: matchers (rule and entity globs, shop), a duration and a reason.
// Opened from an alert, the matchers start as that alert's. While the matchers change, the form
// asks the API which active alerts they would match and lists every one, before saving.
import {
  Badge,
  Box,
  Button,
  CloseButton,
  Code,
  Dialog,
  Field,
  Flex,
  Input,
  NativeSelect,
  Portal,
  Spinner,
  Text,
  Textarea,
} from "@chakra-ui/react";
import { useState } from "react";

import { ApiError, api, isForbidden, type Silence, type SilenceMatchers } from "../api";
import { useDebounced, useLoader } from "../hooks";
import { DURATIONS, entityLabel, formatDuration } from "../format";
import { useI18n } from "../i18n";
import { Notice, type NoticeMessage } from "./Notice";
import { SeverityBadge } from "./badges";

interface Props {
  /** The matchers to start from; null: the dialog is closed. */
  initial: SilenceMatchers | null;
  onClose: () => void;
  onSaved: (silence: Silence) => void;
}

export function SilenceDialog({ initial, onClose, onSaved }: Props) {
  return (
    <Dialog.Root
      open={initial !== null}
      onOpenChange={(e) => {
        if (!e.open) onClose();
      }}
      size={{ base: "full", md: "lg" }}
      scrollBehavior="inside"
      lazyMount
      unmountOnExit
    >
      <Portal>
        <Dialog.Backdrop />
        <Dialog.Positioner>
          <Dialog.Content data-testid="silence-dialog">
            {initial ? <SilenceForm initial={initial} onClose={onClose} onSaved={onSaved} /> : null}
          </Dialog.Content>
        </Dialog.Positioner>
      </Portal>
    </Dialog.Root>
  );
}

function SilenceForm({ initial, onClose, onSaved }: { initial: SilenceMatchers } & Omit<Props, "initial">) {
  const i18n = useI18n();
  const { t } = i18n;
  const [rule, setRule] = useState(initial.rule);
  const [entity, setEntity] = useState(initial.entity);
  const [shop, setShop] = useState(initial.shop ?? "");
  const [duration, setDuration] = useState<string>("2h");
  const [reason, setReason] = useState("");
  const [saving, setSaving] = useState(false);
  const [problem, setProblem] = useState<NoticeMessage | null>(null);

  const matchers: SilenceMatchers = { rule: rule.trim(), entity: entity.trim() || "*", shop: shop.trim() || null };
  const matchersKey = JSON.stringify(matchers);
  const settledKey = useDebounced(matchersKey, 300);
  const previewKey = matchers.rule ? settledKey : null;
  const preview = useLoader(previewKey, (signal) => api.previewSilence(JSON.parse(settledKey) as SilenceMatchers, signal));
  const previewCurrent = previewKey === matchersKey && !preview.loading;

  const canSave = Boolean(matchers.rule && reason.trim() && previewCurrent && !saving);

  const save = async () => {
    setSaving(true);
    setProblem(null);
    try {
      const silence = await api.createSilence({ ...matchers, reason: reason.trim(), duration });
      onSaved(silence);
    } catch (error) {
      setProblem(
        isForbidden(error)
          ? { status: "error", title: t("msg.forbidden"), description: error.detail }
          : {
              status: "error",
              title: t("msg.error"),
              description: error instanceof ApiError ? error.detail : String(error),
            },
      );
    } finally {
      setSaving(false);
    }
  };

  const shown = preview.data?.alerts ?? [];
  const more = preview.data ? Math.max(0, preview.data.total - shown.length) : 0;

  return (
    <>
      <Dialog.Header>
        <Dialog.Title>{t("silence.title")}</Dialog.Title>
      </Dialog.Header>
      <Dialog.Body>
        <form
          id="storefence-silence-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (canSave) void save();
          }}
        >
          <Flex direction="column" gap={3}>
            <Field.Root required invalid={!matchers.rule}>
              <Field.Label>
                {t("silence.rule")}
                <Field.RequiredIndicator />
              </Field.Label>
              <Input value={rule} onChange={(e) => setRule(e.currentTarget.value)} data-testid="silence-rule" fontFamily="mono" />
              <Field.HelperText>{t("silence.ruleHelp")}</Field.HelperText>
            </Field.Root>
            <Field.Root>
              <Field.Label>{t("silence.entity")}</Field.Label>
              <Input value={entity} onChange={(e) => setEntity(e.currentTarget.value)} data-testid="silence-entity" fontFamily="mono" />
              <Field.HelperText>{t("silence.entityHelp")}</Field.HelperText>
            </Field.Root>
            <Flex gap={3} direction={{ base: "column", sm: "row" }}>
              <Field.Root flex="1">
                <Field.Label>{t("silence.shop")}</Field.Label>
                <Input value={shop} onChange={(e) => setShop(e.currentTarget.value)} data-testid="silence-shop" />
                <Field.HelperText>{t("silence.shopHelp")}</Field.HelperText>
              </Field.Root>
              <Field.Root flex="1">
                <Field.Label>{t("silence.duration")}</Field.Label>
                <NativeSelect.Root>
                  <NativeSelect.Field value={duration} onChange={(e) => setDuration(e.currentTarget.value)} data-testid="silence-duration">
                    {DURATIONS.map((d) => (
                      <option key={d} value={d}>
                        {formatDuration(d, i18n)}
                      </option>
                    ))}
                  </NativeSelect.Field>
                  <NativeSelect.Indicator />
                </NativeSelect.Root>
              </Field.Root>
            </Flex>
            <Field.Root required>
              <Field.Label>
                {t("silence.reason")}
                <Field.RequiredIndicator />
              </Field.Label>
              <Textarea
                value={reason}
                onChange={(e) => setReason(e.currentTarget.value)}
                placeholder={t("silence.reasonPlaceholder")}
                rows={2}
                data-testid="silence-reason"
              />
            </Field.Root>

            <Box borderWidth="1px" borderRadius="md" p={2} data-testid="silence-preview">
              {!matchers.rule ? (
                <Text fontSize="sm" color="fg.muted">
                  {t("silence.needRule")}
                </Text>
              ) : !previewCurrent ? (
                <Flex align="center" gap={2} fontSize="sm" color="fg.muted">
                  <Spinner size="xs" /> {t("silence.previewChecking")}
                </Flex>
              ) : preview.error ? (
                <Text fontSize="sm" color="red.fg">
                  {preview.error instanceof ApiError ? preview.error.detail : String(preview.error)}
                </Text>
              ) : preview.data && preview.data.total === 0 ? (
                <Text fontSize="sm" color="fg.muted" data-testid="silence-preview-none">
                  {t("silence.previewNone")}
                </Text>
              ) : preview.data ? (
                <>
                  <Text fontSize="sm" fontWeight="medium" mb={1} data-testid="silence-preview-total" data-total={preview.data.total}>
                    {t("silence.preview", { n: preview.data.total })}
                  </Text>
                  <Box as="ul" maxH="14rem" overflowY="auto" listStyleType="none" m={0} p={0}>
                    {shown.map((a) => (
                      <Flex
                        as="li"
                        key={a.fingerprint}
                        gap={2}
                        align="center"
                        py={1}
                        borderTopWidth="1px"
                        wrap="wrap"
                        data-testid="silence-preview-row"
                        data-fingerprint={a.fingerprint}
                      >
                        <SeverityBadge severity={a.severity} />
                        <Code size="sm" variant="plain">
                          {a.rule_id}
                        </Code>
                        <Text fontSize="sm" fontFamily="mono" minW={0} overflowWrap="anywhere">
                          {entityLabel(a.entity, a.entity_key)}
                        </Text>
                        {a.shop ? <Badge variant="outline">{a.shop}</Badge> : null}
                      </Flex>
                    ))}
                  </Box>
                  {more > 0 ? (
                    <Text fontSize="xs" color="fg.muted" mt={1}>
                      {t("silence.previewMore", { n: more })}
                    </Text>
                  ) : null}
                </>
              ) : null}
            </Box>

            {problem ? <Notice notice={problem} onClose={() => setProblem(null)} /> : null}
          </Flex>
        </form>
      </Dialog.Body>
      <Dialog.Footer>
        <Button variant="outline" onClick={onClose} data-testid="silence-cancel">
          {t("action.cancel")}
        </Button>
        <Button
          type="submit"
          form="storefence-silence-form"
          colorPalette="blue"
          disabled={!canSave}
          loading={saving}
          data-testid="silence-save"
        >
          {t("action.save")}
        </Button>
      </Dialog.Footer>
      <Dialog.CloseTrigger asChild>
        <CloseButton size="sm" aria-label={t("action.close")} />
      </Dialog.CloseTrigger>
    </>
  );
}
