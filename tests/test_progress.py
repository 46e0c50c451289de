"""Tests of quiet mode and of when a progress bar is drawn (fit's bar: tests/test_train.py)."""

import io

import pytest

from fairprune_lite import progress
from fairprune_lite.experiments import profiles


@pytest.mark.parametrize("value,quiet", [("", False), ("0", False), ("1", True), (" TRUE ", True), ("on", True)])
def test_quiet_from_env(monkeypatch, value, quiet):
    monkeypatch.setenv("FAIRPRUNE_QUIET", value)
    assert progress.quiet_from_env() is quiet and profiles.quiet_default() is quiet


class _Closed(io.StringIO):
    def isatty(self):
        raise ValueError("I/O operation on closed file")


@pytest.mark.parametrize("stream", [None, io.StringIO(), _Closed()])
def test_no_bar_without_a_terminal(monkeypatch, stream):
    monkeypatch.delenv("FAIRPRUNE_QUIET", raising=False)
    monkeypatch.setattr("sys.stderr", stream)
    assert progress.stderr_is_terminal() is False
    assert progress.progress_enabled(True) is False and progress.progress_bar(3, True, "x") is None
    assert profiles.progress_default(False) is False
