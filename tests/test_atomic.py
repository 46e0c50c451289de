"""Tests of the one atomic write."""

import pytest

from fairprune_lite import atomic


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    atomic.atomic_write_text(path, "one\n")
    assert path.read_text() == "one\n"

    def fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic.atomic_write(path, fail)
    assert path.read_text() == "one\n" and sorted(p.name for p in path.parent.iterdir()) == ["f.txt"]
    atomic.atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
