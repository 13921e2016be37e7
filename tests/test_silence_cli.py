"""`storefence silence add | list | expire` on a SQLite state store of the test's own."""

from __future__ import annotations

from datetime import timedelta

import pytest

from threshold_operators.alerting.store import StateStore
from threshold_operators.cli import main

pytestmark = pytest.mark.clock_sensitive  # reads the wall clock (tests/test_clocks.py)


@pytest.fixture
def state(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    yield url
    StateStore(url=url).engine.dispose()


def silences(url):
    store = StateStore(url=url)
    try:
        return store.silences()
    finally:
        store.engine.dispose()


def test_add_for_a_while(state, capsys, pinned_now):
    before = pinned_now
    assert main(["silence", "add", "--rule", "inventory.*", "--entity", "*sku=SKU-0042*", "--shop", "S1",
                 "--reason", "大促压测", "--by", "li.wei", "--for", "2h", "--state", state]) == 0
    (s,) = silences(state)
    assert (s.rule, s.entity, s.shop, s.author, s.reason) == ("inventory.*", "*sku=SKU-0042*", "S1", "li.wei", "大促压测")
    assert before <= s.starts_at < before + timedelta(minutes=1) and s.ends_at - s.starts_at == timedelta(hours=2)
    out = capsys.readouterr().out
    assert out.startswith(f"added {s.id}: rule inventory.*") and "li.wei (大促压测)" in out


def test_a_maintenance_window(state, pinned_now):
    starts = (pinned_now + timedelta(days=1)).replace(microsecond=0)
    assert main(["silence", "add", "--rule", "*", "--reason", "warehouse upgrade", "--starts", starts.isoformat(),
                 "--until", (starts + timedelta(hours=3)).isoformat().replace("+00:00", "Z"), "--state", state]) == 0
    (s,) = silences(state)
    assert s.starts_at == starts and s.ends_at == starts + timedelta(hours=3) and s.entity == "*" and s.shop is None


def test_list_then_expire(state, capsys, pinned_now):
    main(["silence", "add", "--rule", "traffic.*", "--reason", "campaign", "--for", "1h", "--state", state])
    later = (pinned_now + timedelta(days=2)).isoformat()
    main(["silence", "add", "--rule", "orders.*", "--reason", "window", "--starts", later, "--for", "1h",
          "--state", state])
    first, second = (s.id for s in silences(state))
    capsys.readouterr()

    assert main(["silence", "list", "--state", state]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["active", f"{first}:"], ["pending", f"{second}:"]]

    assert main(["silence", "expire", first, "--state", state]) == 0
    assert capsys.readouterr().out.strip() == f"expired {first}"
    main(["silence", "list", "--state", state])
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == [f"{second}:"]
    main(["silence", "list", "--all", "--state", state])
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and listed[0].startswith("expired ") and first in listed[0]


@pytest.mark.parametrize("args, message", [
    (["add", "--rule", "x", "--reason", "r", "--starts", "2031-01-02T00:00:00Z", "--until", "2031-01-01T00:00:00Z"],
     "must end after it starts"),
    (["add", "--rule", "x", "--reason", "r", "--until", "2020-01-01T00:00:00Z"], "would end in the past"),
    (["add", "--rule", "x", "--reason", "  ", "--for", "1h"], "needs an author and a reason"),
    (["expire", "0123456789ab"], "no unexpired silence has id '0123456789ab'"),
])
def test_bad_input_is_one_line_and_exit_2(state, capsys, args, message):
    assert main(["silence", *args, "--state", state]) == 2
    err = capsys.readouterr().err
    assert err.startswith("storefence silence: ") and message in err and err.count("\n") == 1
    assert silences(state) == []


@pytest.mark.parametrize("args", [
    ["add", "--rule", "x", "--reason", "r"],  # no end
    ["add", "--rule", "x", "--reason", "r", "--for", "2h", "--until", "2031-01-01T00:00:00Z"],  # two ends
    ["add", "--rule", "x", "--reason", "r", "--for", "two hours"],
    ["add", "--reason", "r", "--for", "2h"],  # no rule
])
def test_argument_errors_exit_2(state, capsys, args):
    with pytest.raises(SystemExit) as exit_:
        main(["silence", *args, "--state", state])
    assert exit_.value.code == 2
