// Builds src/main.tsx into one UMD file, dist/storefence-alerts.umd.js, for Airflow's react_apps.
//
// Airflow's UI loads the file with import() and then reads globalThis.AirflowPlugin, which must be
// the page component. React, React Router and Chakra UI are NOT bundled: the host puts its own
// copies on globalThis (React, ReactDOM, ReactJSXRuntime, ReactRouterDOM, ChakraUI, EmotionReact),
// so the page shares the host's router, theme and dark mode. The versions in package.json match
// Airflow 3.3's UI and are there for the types only.
import { defineConfig } from "vite";

const HOST_GLOBALS: Record<string, string> = {
  react: "React",
  "react-dom": "ReactDOM",
  "react/jsx-runtime": "ReactJSXRuntime",
  "react-router-dom": "ReactRouterDOM",
  "react-router": "ReactRouterDOM",
  "@chakra-ui/react": "ChakraUI",
  "@emotion/react": "EmotionReact",
};

export default defineConfig({
  oxc: { jsx: { runtime: "automatic", importSource: "react" } },
  build: {
    outDir: "dist",
    emptyOutDir: false, // dist/ also holds SOURCES.sha256, written after the build
    sourcemap: false,
    target: "es2022",
    lib: {
      entry: "src/main.tsx",
      formats: ["umd"],
      name: "AirflowPlugin",
      fileName: () => "storefence-alerts.umd.js",
    },
    rolldownOptions: {
      external: Object.keys(HOST_GLOBALS),
      output: {
        exports: "default", // globalThis.AirflowPlugin = the component itself, not a module object
        globals: HOST_GLOBALS,
      },
    },
  },
});
