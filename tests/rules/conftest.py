"""Collect the rule unit tests written as data (tests/rules/*.yaml): one pytest item per case.

The same cases run with ``storefence test-rules``; the format is in
``threshold_operators/analysis/rule_tests.py`` and ``docs/analysis.md``.
"""

from __future__ import annotations

import pytest


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".yaml" and file_path.parent.name == "rules" and file_path.parent.parent.name == "tests":
        return RuleTestFile.from_parent(parent, path=file_path)
    return None


class RuleTestFile(pytest.File):
    def collect(self):
        from threshold_operators.analysis.rule_tests import load_cases

        for case in load_cases(self.path):
            yield RuleTestItem.from_parent(self, name=f"{case.rule}: {case.name}", case=case)


class RuleTestItem(pytest.Item):
    def __init__(self, *, case, **kwargs):
        super().__init__(**kwargs)
        self.case = case

    def runtest(self):
        from threshold_operators.analysis.rule_tests import run_case
        from threshold_operators.rules.catalogue import load_catalogue

        failures = run_case(self.case, load_catalogue())
        if failures:
            raise RuleCaseFailed("\n".join(failures))

    def repr_failure(self, excinfo):
        return str(excinfo.value) if isinstance(excinfo.value, RuleCaseFailed) else super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.case.line - 1, f"{self.case.rule}: {self.case.name}"


class RuleCaseFailed(AssertionError):
    pass
