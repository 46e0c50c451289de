"""`fairprune data fetch`: end to end against HTTP servers on 127.0.0.1 started here.

The servers serve fixture archives in the official layouts (fairprune_lite.data.fixtures) and
misbehave on purpose: a Google-Drive-like quota page, a connection dropped mid-file, a truncated
file, corrupt bytes, a mirror that stripped CR line ends. Timeouts are short and every loop is
bounded, so the module takes seconds.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from fairprune_lite.data import fetch, fixtures, load_dataset

QUOTA_PAGE = (b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>"
              b"Too many users have viewed or downloaded this file recently.</body></html>")


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (name -> bytes) by path, honouring ``Range: bytes=N-``, in the
    server's ``mode``: good, quota, drop (every response stops after half of what is left),
    drop-once (the first response per file stops half way), truncated, corrupt, norange."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        name = self.path.lstrip("/").split("?")[0]
        rng = self.headers.get("Range")
        with srv.lock:
            srv.requests.append((name, rng))
            first_time = name not in srv.seen
            srv.seen.add(name)
        if srv.mode == "quota":
            return self._send(200, QUOTA_PAGE, "text/html; charset=utf-8")
        if srv.mode.startswith("redirect:"):  # as Google Drive and Hugging Face send downloads to a CDN
            self.send_response(302)
            self.send_header("Location", srv.mode[len("redirect:"):] + name)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if name not in srv.files:
            return self._send(404, b"not found", "text/plain")
        data = srv.files[name]
        if srv.mode == "truncated":
            data = data[: len(data) // 2]
        elif srv.mode == "short-garbage":
            data = b"not the file"
        elif srv.mode == "corrupt":
            k = len(data) * 3 // 4  # past the half a truncated source leaves behind
            data = data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1:]
        start = 0
        if rng and srv.mode != "norange":
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                return self._send(416, b"", "text/plain")
        body = data[start:]
        cut = None
        if srv.mode == "drop" or (srv.mode == "drop-once" and first_time):
            cut = max(1, len(body) // 2)
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        if cut is not None:
            self.close_connection = True

    def _send(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def serve():
    """serve(files, mode) -> base URL of a server on 127.0.0.1; all are shut down afterwards."""
    servers = []

    def start(files: dict[str, bytes], mode: str = "good"):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        srv.daemon_threads = True
        srv.files, srv.mode, srv.requests, srv.seen, srv.lock = files, mode, [], set(), threading.Lock()
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/", srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _spec_for(base: fetch.DatasetSpec, files: dict[str, Path]) -> fetch.DatasetSpec:
    """The dataset's real spec with the fixture files' sizes and checksums (what they publish)."""
    out = []
    for rf in base.files:
        data = files[rf.name].read_bytes()
        out.append(dataclasses.replace(rf, md5=hashlib.md5(data).hexdigest(), sha256=hashlib.sha256(data).hexdigest(),
                                       size=len(data), generate=None, check=None))
    return dataclasses.replace(base, files=tuple(out))


@pytest.fixture(scope="module")
def celeba_files(tmp_path_factory):
    return fixtures.celeba_archives(tmp_path_factory.mktemp("celeba_src"), n_per_split=4)


@pytest.fixture(scope="module")
def lfw_files(tmp_path_factory):
    return fixtures.lfw_archives(tmp_path_factory.mktemp("lfw_src"), people=8, per_person=2)


def _blobs(files: dict[str, Path]) -> dict[str, bytes]:
    return {k: p.read_bytes() for k, p in files.items()}


# --------------------------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------------------------
def test_celeba_end_to_end(tmp_path, serve, celeba_files):
    url, srv = serve(_blobs(celeba_files))
    spec = _spec_for(fetch.CELEBA, celeba_files)
    log = []
    got = fetch.fetch(spec, tmp_path / "faces", source=url, optional=True, timeout=5, log=log.append)
    assert set(got) == {rf.name for rf in spec.files} and set(got.values()) == {url}
    folder = tmp_path / "faces" / "celeba"
    for name, path in celeba_files.items():
        assert (folder / name).read_bytes() == path.read_bytes()
    assert len(list((folder / "img_align_celeba").glob("*.jpg"))) == 12
    assert not list(tmp_path.rglob("*.part")) and not list(folder.glob(".*unpacking"))
    with pytest.warns(UserWarning, match="not the official files"):
        sp = load_dataset("celeba", root=tmp_path / "faces", image_size=16)
    assert [len(d) for d in sp] == [4, 4, 4]
    assert sp.train.group_counts() == {(0, 0): 1, (0, 1): 1, (1, 0): 1, (1, 1): 1}
    # a second run finds everything verified and downloads nothing
    n = len(srv.requests)
    again = fetch.fetch(spec, tmp_path / "faces", source=url, optional=True, timeout=5, log=log.append)
    assert set(again.values()) == {"present"} and len(srv.requests) == n
    assert any("already unpacked" in m for m in log)


def test_lfw_end_to_end(tmp_path, serve, lfw_files):
    url, _ = serve(_blobs(lfw_files))
    spec = _spec_for(fetch.LFW, lfw_files)
    fetch.fetch(spec, tmp_path, source=[url], timeout=5, log=lambda m: None, remove_archives=True)
    assert not (tmp_path / "lfw.tgz").exists()  # removed once unpacked
    assert len(list((tmp_path / "lfw").rglob("*.jpg"))) == 16
    sp = load_dataset("lfw", root=tmp_path, image_size=16, val_fraction=0.25, test_fraction=0.25)
    assert sum(len(d) for d in sp) == 16
    reference = load_dataset("lfw", root=fixtures.make_fake_lfw(tmp_path / "direct", 8, 2, male_by="image"),
                             image_size=16, val_fraction=0.25, test_fraction=0.25)
    assert torch.equal(sp.test[0][0], reference.test[0][0])  # the same pixels after the round trip


# --------------------------------------------------------------------------------------------
# misbehaving sources
# --------------------------------------------------------------------------------------------
def _one_file_spec(data: bytes, name: str = "blob.bin", **kw) -> fetch.DatasetSpec:
    rf = fetch.RemoteFile(name, name, md5=hashlib.md5(data).hexdigest(), size=len(data), **kw)
    return fetch.DatasetSpec(name="blob", files=(rf,), sources=())


DATA = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


def test_quota_page_is_reported_and_the_next_source_used(tmp_path, serve):
    quota, _ = serve({"blob.bin": DATA}, "quota")
    good, _ = serve({"blob.bin": DATA})
    log = []
    got = fetch.fetch(_one_file_spec(DATA), tmp_path, source=[quota, good], timeout=5, log=log.append)
    assert got == {"blob.bin": good}
    assert (tmp_path / "blob.bin").read_bytes() == DATA
    msg = next(m for m in log if m.startswith(f"blob.bin: {quota} failed"))
    assert "served an HTML page (a quota, sign-in or error page)" in msg and f"trying {good}" in msg


def test_dropped_connection_is_resumed_with_range(tmp_path, serve):
    url, srv = serve({"blob.bin": DATA}, "drop-once")
    log = []
    fetch.fetch(_one_file_spec(DATA), tmp_path, source=url, timeout=5, log=log.append)
    assert (tmp_path / "blob.bin").read_bytes() == DATA
    assert srv.requests[0] == ("blob.bin", None)
    assert srv.requests[1] == ("blob.bin", f"bytes={len(DATA) // 2}-")  # resumed, not restarted
    assert any(f"resuming at byte {len(DATA) // 2:,} (attempt 2 of 3)" in m for m in log)


def test_source_that_keeps_dropping_hands_its_part_to_the_next(tmp_path, serve):
    bad, srv_bad = serve({"blob.bin": DATA}, "drop")
    good, srv_good = serve({"blob.bin": DATA})
    log = []
    fetch.fetch(_one_file_spec(DATA), tmp_path, source=[bad, good], attempts=2, timeout=5, log=log.append)
    assert (tmp_path / "blob.bin").read_bytes() == DATA
    assert len(srv_bad.requests) == 2  # bounded
    have = len(DATA) // 2 + (len(DATA) - len(DATA) // 2) // 2
    assert srv_good.requests == [("blob.bin", f"bytes={have}-")]
    assert any("gave up after 2 attempts" in m and f"trying {good}" in m for m in log)


def test_truncated_and_corrupt_files_never_reach_the_final_name(tmp_path, serve):
    short, _ = serve({"blob.bin": DATA}, "truncated")
    corrupt, _ = serve({"blob.bin": DATA}, "corrupt")
    with pytest.raises(fetch.FetchError) as info:
        fetch.fetch(_one_file_spec(DATA), tmp_path, source=[short, corrupt], timeout=5, log=lambda m: None)
    text = str(info.value)
    assert f"{short}: truncated: {len(DATA) // 2:,} bytes, expected {len(DATA):,}" in text
    assert f"{corrupt}: MD5" in text and "differs from the published" in text
    assert not (tmp_path / "blob.bin").exists()
    assert not (tmp_path / "blob.bin.part").exists()  # corrupt bytes are not kept for resuming


def test_wrong_partial_bytes_are_not_trusted(tmp_path, serve):
    bad, _ = serve({"blob.bin": DATA}, "short-garbage")
    good, srv = serve({"blob.bin": DATA})
    log = []
    fetch.fetch(_one_file_spec(DATA), tmp_path, source=[bad, good], timeout=5, log=log.append)
    assert (tmp_path / "blob.bin").read_bytes() == DATA
    assert srv.requests == [("blob.bin", "bytes=12-"), ("blob.bin", None)]  # resumed, then from the start
    assert any("after resuming an earlier partial file; downloading it again from the start" in m for m in log)


def test_server_ignoring_range_restarts_cleanly(tmp_path, serve):
    (tmp_path / "blob.bin.part").write_bytes(DATA[:1000])
    url, srv = serve({"blob.bin": DATA}, "norange")
    fetch.fetch(_one_file_spec(DATA), tmp_path, source=url, timeout=5, log=lambda m: None)
    assert (tmp_path / "blob.bin").read_bytes() == DATA and srv.requests == [("blob.bin", "bytes=1000-")]


def test_range_survives_a_redirect(tmp_path, serve):
    (tmp_path / "blob.bin.part").write_bytes(DATA[:5000])
    cdn, srv = serve({"blob.bin": DATA})
    front, _ = serve({}, "redirect:" + cdn)
    fetch.fetch(_one_file_spec(DATA), tmp_path, source=front, timeout=5, log=lambda m: None)
    assert (tmp_path / "blob.bin").read_bytes() == DATA and srv.requests == [("blob.bin", "bytes=5000-")]


def test_mirror_without_carriage_returns_is_restored(tmp_path, serve):
    official = b"".join(f"{i:06d}.jpg {i % 3}\r\n".encode() for i in range(1, 500))
    url, _ = serve({"part.txt": official.replace(b"\r\n", b"\n")})
    log = []
    fetch.fetch(_one_file_spec(official, "part.txt", crlf=True), tmp_path, source=url, timeout=5, log=log.append)
    assert (tmp_path / "part.txt").read_bytes() == official
    assert any("CRLF restored, checksum matches" in m for m in log)


def test_generated_partition_is_the_official_file():
    rf = next(f for f in fetch.CELEBA.files if f.name == "list_eval_partition.txt")
    data = rf.generate()
    assert hashlib.md5(data).hexdigest() == rf.md5 == "d32c9cbf5e040fd4025c592c306e6668"
    assert hashlib.sha256(data).hexdigest() == rf.sha256 and len(data) == rf.size


def test_published_checksums_are_documented():
    readme = (Path(__file__).resolve().parents[1] / "data" / "README.md").read_text()
    for spec in fetch.DATASETS.values():
        for rf in spec.files:
            for digest in (rf.md5, rf.sha256):
                if digest:
                    assert digest in readme, (rf.name, digest)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def test_every_file_is_tried_before_failing(tmp_path, serve, celeba_files):
    blobs = _blobs(celeba_files)
    del blobs["list_attr_celeba.txt"]  # this source lacks one file: the others still arrive
    url, _ = serve(blobs)
    with pytest.raises(fetch.FetchError) as info:
        fetch.fetch(_spec_for(fetch.CELEBA, celeba_files), tmp_path, source=url, timeout=5, log=lambda m: None)
    assert "list_attr_celeba.txt: every source failed" in str(info.value) and "HTTP 404" in str(info.value)
    assert "fetched and verified: img_align_celeba.zip, list_eval_partition.txt" in str(info.value)
    assert (tmp_path / "celeba" / "list_eval_partition.txt").is_file()
    assert not (tmp_path / "celeba" / "img_align_celeba").exists()  # not unpacked while incomplete


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown source 'kaggle' for celeba; known sources: generated, "
                                         "google-drive, huggingface, gcs-mirror"):
        fetch.fetch("celeba", tmp_path, source="kaggle")
    with pytest.raises(ValueError, match="unknown dataset 'mnist' to fetch; known: celeba, lfw"):
        fetch.fetch("mnist", tmp_path)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="a_file/faces is not a writable folder"):
        fetch.fetch("celeba", tmp_path / "a_file" / "faces", source="generated")


def test_full_disk_leaves_nothing_under_the_final_name(tmp_path, serve, monkeypatch):
    url, _ = serve({"blob.bin": DATA})

    class Full:
        def __init__(self, path, mode):
            self.f = open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def seek(self, n):
            self.f.seek(n)

        def truncate(self):
            self.f.truncate()

        def write(self, chunk):
            if self.f.tell() + len(chunk) > 100_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.f.write(chunk)

    monkeypatch.setattr(fetch, "_open_part", Full)
    with pytest.raises(fetch.FetchError, match="no space left.*partial downloads are kept as \\*.part"):
        fetch.fetch(_one_file_spec(DATA), tmp_path, source=url, timeout=5, log=lambda m: None)
    assert not (tmp_path / "blob.bin").exists()
    monkeypatch.undo()
    fetch.fetch(_one_file_spec(DATA), tmp_path, source=url, timeout=5, log=lambda m: None)  # resumes
    assert (tmp_path / "blob.bin").read_bytes() == DATA


def test_full_disk_while_unpacking_leaves_no_half_folder(tmp_path, serve, celeba_files, monkeypatch):
    import zipfile

    url, _ = serve(_blobs(celeba_files))
    spec = _spec_for(fetch.CELEBA, celeba_files)

    def extract_some(self, path):
        self.extract(self.namelist()[0], path)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", extract_some)
    with pytest.raises(fetch.FetchError, match="no space left"):
        fetch.fetch(spec, tmp_path, source=url, timeout=5, log=lambda m: None)
    folder = tmp_path / "celeba"
    assert not (folder / "img_align_celeba").exists() and not list(folder.glob(".*unpacking"))
    assert (folder / "img_align_celeba.zip").is_file()  # the verified download is kept
    monkeypatch.undo()
    fetch.fetch(spec, tmp_path, source=url, timeout=5, log=lambda m: None)
    assert len(list((folder / "img_align_celeba").glob("*.jpg"))) == 12


def test_loader_names_the_fetch_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="fairprune data fetch celeba --root"):
        load_dataset("celeba", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="fairprune data fetch lfw --root"):
        load_dataset("lfw", root=tmp_path)


# --------------------------------------------------------------------------------------------
# the command line (called directly: the parser is built as __main__ does)
# --------------------------------------------------------------------------------------------
def _cli(argv):
    from fairprune_lite.__main__ import add_data_parser, cmd_data

    parser = argparse.ArgumentParser(prog="fairprune")
    add_data_parser(parser.add_subparsers(dest="command"))
    return cmd_data(parser.parse_args(argv))


def test_cli(tmp_path, serve, celeba_files, monkeypatch, capsys):
    assert _cli(["data", "fetch", "celeba", "--root", str(tmp_path), "--source", "bogus"]) == 2
    assert "known sources: generated, google-drive" in capsys.readouterr().err
    assert _cli(["data", "fetch", "imagenet", "--root", str(tmp_path)]) == 2
    monkeypatch.delenv("FAIRPRUNE_DATA_ROOT", raising=False)
    assert _cli(["data", "fetch", "celeba"]) == 2
    assert "--root" in capsys.readouterr().err
    assert _cli(["data", "fetch", "lfw", "--list-sources"]) == 0
    assert "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0" in capsys.readouterr().out
    assert _cli(["data"]) == 2
    quota, _ = serve(_blobs(celeba_files), "quota")
    good, _ = serve(_blobs(celeba_files))
    monkeypatch.setitem(fetch.DATASETS, "celeba", _spec_for(fetch.CELEBA, celeba_files))
    monkeypatch.setenv("FAIRPRUNE_DATA_ROOT", str(tmp_path / "faces"))
    assert _cli(["data", "fetch", "celeba", "--source", quota, "--timeout", "5"]) == 1
    err = capsys.readouterr().err
    assert "every source failed" in err and "served an HTML page" in err
    assert not (tmp_path / "faces" / "celeba" / "list_attr_celeba.txt").exists()
    assert _cli(["data", "fetch", "celeba", "--source", quota, "--source", good, "--timeout", "5"]) == 0
    assert "celeba: ready under" in capsys.readouterr().out
    assert (tmp_path / "faces" / "celeba" / "img_align_celeba" / "000012.jpg").is_file()
