// A message at the top of the page: the result of an action, or why it failed.
import { Alert, CloseButton } from "@chakra-ui/react";

import { useI18n } from "../i18n";

export interface NoticeMessage {
  status: "success" | "info" | "warning" | "error";
  title: string;
  description?: string;
}

export function Notice({ notice, onClose }: { notice: NoticeMessage; onClose?: () => void }) {
  const { t } = useI18n();
  return (
    <Alert.Root status={notice.status} data-testid="notice" data-status={notice.status} alignItems="flex-start">
      <Alert.Indicator />
      <Alert.Content minW={0}>
        <Alert.Title>{notice.title}</Alert.Title>
        {notice.description ? (
          <Alert.Description overflowWrap="anywhere">{notice.description}</Alert.Description>
        ) : null}
      </Alert.Content>
      {onClose ? <CloseButton size="sm" aria-label={t("action.dismiss")} onClick={onClose} /> : null}
    </Alert.Root>
  );
}
