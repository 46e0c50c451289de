"""The book's rules for what it stores and what it says: the book's results are written from a
clean tree only (:func:`check_clean`), and a sentence about a computed number is checked where
that number was computed (:func:`check_claims`, against the :func:`kernel_fingerprint` stored
with the executed chapters)."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import provenance as _prov  # read at call time: one home for the repository's paths and git state

__all__ = ["check_clean", "kernel_fingerprint", "check_claims"]


def check_clean(out: str | os.PathLike, allow_dirty: bool) -> bool:
    """Refuse (``ValueError``) to write into the book's stored results (``book/results``) from a
    working tree with uncommitted changes, unless ``allow_dirty``; returns whether the tree is
    dirty."""
    _, dirty = _prov.git_state()
    try:
        inside = Path(out).resolve().is_relative_to(_prov.BOOK_RESULTS.resolve())
    except OSError:
        inside = False
    if inside and dirty and not allow_dirty:
        raise ValueError(f"refusing to write into {_prov.BOOK_RESULTS} from a working tree with uncommitted changes "
                         f"(commit first, or pass --allow-dirty and every result and caption will say so)")
    return bool(dirty)


def kernel_fingerprint() -> dict[str, Any]:
    """The part of :func:`fingerprint` that decides a computed number's last bits on a CPU: the
    CPU model, the instruction set torch dispatches to, the torch build and the dispatch
    overrides (the thread count is left out: the book's chapters run their training single
    threaded whatever the kernel's default)."""
    return {k: v for k, v in _prov.fingerprint().items() if k != "threads"}


def check_claims(claims: Mapping[str, bool], reference: str | os.PathLike = "FINGERPRINT.json") -> None:
    """Check the claims a text makes about numbers computed above it.

    Where the numbers were computed on the machine whose :func:`kernel_fingerprint` is stored in
    ``reference`` (the book's executed outputs: ``book/FINGERPRINT.json``), or when there is no
    reference, a claim that does not hold raises ``AssertionError`` naming it: the text must be
    rewritten. On another CPU or dispatch level the trained models differ in their last bits and
    a claim near its threshold may flip; there the claims that do not hold are printed, with both
    fingerprints, instead (the text was checked where its printed numbers come from)."""
    failed = [k for k, v in claims.items() if not v]
    if not failed:
        return
    ref_path = Path(reference)
    ref = json.loads(ref_path.read_text()) if ref_path.is_file() else None
    here = kernel_fingerprint()
    if ref is None or ref == here:
        raise AssertionError("a sentence of the text no longer holds, rewrite it: " + "; ".join(failed))
    print(f"NOTE: on this machine ({here}) {len(failed)} of {len(claims)} claims do not hold: "
          + "; ".join(failed) + f". The text was checked where its numbers were computed ({ref}).")
