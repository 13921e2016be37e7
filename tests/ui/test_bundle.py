"""The committed UI bundle (plugins/threshold_operators/ui/dist/) matches its sources.

Airflow serves ``dist/storefence-alerts.umd.js`` as it is in git: nothing builds it at install time.
``npm run build`` (``make ui``) writes the hash of the sources it built from to
``dist/SOURCES.sha256``; a change under ``ui/src`` or to the build's configuration without a rebuild
fails here. The bundle must also be what Airflow's UI can load: a UMD file that sets
``globalThis.AirflowPlugin``, using the host's React, React Router and Chakra UI instead of copies
of its own.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

UI = Path(__file__).resolve().parents[2] / "plugins" / "threshold_operators" / "ui"
BUNDLE = UI / "dist" / "storefence-alerts.umd.js"
HASH_FILE = UI / "dist" / "SOURCES.sha256"
REBUILD = "run `make ui` and commit plugins/threshold_operators/ui/dist/"


def _sources_hash(ui_dir: Path) -> str:
    # ui/ is a Node project, not a Python package: load its script by path.
    spec = importlib.util.spec_from_file_location("storefence_ui_sources_hash", UI / "sources_hash.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sources_hash(ui_dir)


def test_bundle_is_built_from_the_current_sources():
    assert BUNDLE.is_file(), f"{BUNDLE} is missing: {REBUILD}"
    assert HASH_FILE.is_file(), f"{HASH_FILE} is missing: {REBUILD}"
    built_from = HASH_FILE.read_text().strip()
    assert _sources_hash(UI) == built_from, (
        f"the UI sources changed since {BUNDLE.name} was built (hash in {HASH_FILE.name}): {REBUILD}"
    )


def test_sources_hash_sees_a_change(tmp_path):
    for name in ("package.json", "package-lock.json", "tsconfig.json", "vite.config.ts"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.tsx").write_text("export default () => null;\n")
    before = _sources_hash(tmp_path)
    (tmp_path / "src" / "main.tsx").write_text("export default () => 1;\n")
    assert _sources_hash(tmp_path) != before
    (tmp_path / "src" / "main.tsx").write_text("export default () => null;\n")
    assert _sources_hash(tmp_path) == before
    (tmp_path / "src" / "extra.ts").write_text("")  # a new, empty file counts too
    assert _sources_hash(tmp_path) != before


def test_bundle_is_a_umd_module_setting_airflow_plugin():
    head = BUNDLE.read_text(encoding="utf-8")[:2000]
    assert "define.amd" in head and "module.exports" in head, f"not a UMD bundle: {REBUILD}"
    # The browser branch: globalThis.AirflowPlugin = factory(<the host's globals>).
    factory = re.search(r"\.AirflowPlugin\s*=\s*\w+\(([^)]*)\)", head)
    assert factory, "the bundle does not assign AirflowPlugin the component (rollup output.exports must be 'default')"
    host_globals = {arg.strip().split(".")[-1] for arg in factory.group(1).split(",")}
    assert {"React", "ReactJSXRuntime", "ChakraUI"} <= host_globals, host_globals
    assert host_globals <= {"React", "ReactDOM", "ReactJSXRuntime", "ReactRouterDOM", "ChakraUI", "EmotionReact"}, (
        f"the bundle expects globals Airflow's UI does not set: {host_globals}"
    )


def test_bundle_has_no_copy_of_react_or_chakra():
    text = BUNDLE.read_text(encoding="utf-8")
    for marker in (
        "react.production",
        "__SECRET_INTERNALS",
        "__CLIENT_INTERNALS_DO_NOT_USE",
        "react.transitional.element",  # React's element type symbol, only in React itself
        "chakra-theme",  # Chakra's default CSS variables root
    ):
        assert marker not in text, f"the bundle contains {marker!r}: React or Chakra got bundled instead of external"
    assert len(text.encode()) < 250_000, f"the bundle is {len(text.encode())} bytes: something got bundled"
