// The entry point: Airflow's UI loads the built bundle and renders its default export, the page
// component, inside its own providers (Chakra theme, router), at the plugin's nav entry.
// Only a default export: the UMD build then sets globalThis.AirflowPlugin to this component.
//
// Layout of src/:
//   main.tsx                  this file: the component Airflow renders, with the language state
//   api.ts                    typed client of the Storefence API (plugins/threshold_operators/api)
//   urlState.ts               tab, filters and the open alert, kept in the URL's query string
//   i18n.ts                   every label in English and Chinese
//   format.ts, hooks.ts       number/time formatting; loading and refresh hooks
//   components/AlertsPage.tsx the page itself; the other components are its parts
import { useMemo, useState } from "react";

import { AlertsPage } from "./components/AlertsPage";
import { I18nContext, initialLang, makeI18n, saveLang, type Lang } from "./i18n";

/** The props Airflow passes to a plugin page (unused: this page is not about one DAG or task). */
export interface PluginProps {
  dagId?: string;
  runId?: string;
  taskId?: string;
  mapIndex?: string;
}

export default function StorefenceAlertsPage(_props: PluginProps) {
  const [lang, setLang] = useState<Lang>(initialLang);
  // the switch's choice is also saved: Airflow mounts the page again on every navigation
  const i18n = useMemo(() => makeI18n(lang, (next) => { saveLang(next); setLang(next); }), [lang]);
  return (
    <I18nContext.Provider value={i18n}>
      <AlertsPage />
    </I18nContext.Provider>
  );
}
