"""fairprune_lite.experiments.book_rules: claims are asserted where their numbers were computed;
the book's results are written from a clean tree only (the sweep's side: tests/test_sweep.py)."""
from __future__ import annotations

import importlib
import json

import pytest

from fairprune_lite import experiments as ex

prov = importlib.import_module("fairprune_lite.experiments.provenance")  # the module, not the function


def test_claims_are_asserted_where_the_numbers_were_computed(tmp_path, capsys):
    ref = tmp_path / "FINGERPRINT.json"
    ex.check_claims({"a holds": True})  # nothing to say
    with pytest.raises(AssertionError, match="b fails"):
        ex.check_claims({"a holds": True, "b fails": False}, reference=ref)  # no reference: assert
    ref.write_text(json.dumps(ex.kernel_fingerprint()))
    with pytest.raises(AssertionError, match="b fails"):
        ex.check_claims({"b fails": False}, reference=ref)  # the same machine: assert
    ref.write_text(json.dumps({**ex.kernel_fingerprint(), "capability": "another"}))
    ex.check_claims({"b fails": False}, reference=ref)  # another CPU: reported, not raised
    out = capsys.readouterr().out
    assert "1 of 1 claims do not hold: b fails" in out and "another" in out


def test_only_the_books_results_need_a_clean_tree(tmp_path, monkeypatch):
    book = tmp_path / "book" / "results"
    monkeypatch.setattr(prov, "BOOK_RESULTS", book)
    monkeypatch.setattr(prov, "git_state", lambda: ("abc", True))
    assert ex.check_clean(tmp_path / "elsewhere", allow_dirty=False) is True  # dirty, but not the book's
    with pytest.raises(ValueError, match="uncommitted changes.*--allow-dirty"):
        ex.check_clean(book / "fig1", allow_dirty=False)
    assert ex.check_clean(book / "fig1", allow_dirty=True) is True
    monkeypatch.setattr(prov, "git_state", lambda: ("abc", False))
    assert ex.check_clean(book, allow_dirty=False) is False
