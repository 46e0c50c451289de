"""Download CelebA and LFW into the layouts the loaders read, every file checked before use.

``fairprune data fetch celeba|lfw [--root DIR] [--source NAME|URL]`` (or :func:`fetch`):

* every file has its sources in order of preference: the official one first, then mirrors
  (and, for CelebA's partition file, a copy generated from its published rule). A source that
  fails is reported with the reason and the next source to try;
* a download goes to ``<file>.part`` and is resumed with an HTTP ``Range`` request after a
  dropped connection (a bounded number of attempts per source, short timeouts); only a file
  whose size and published MD5 / SHA-256 match is renamed to its final name, so nothing
  half-written ever sits under a final name;
* an HTML page where a file was expected (Google Drive's "quota exceeded" or sign-in page, a
  mirror's error page) and a truncated file are recognised as such, not saved as data;
* archives are unpacked into a temporary folder and renamed into place when complete.

The sources, sizes and checksums are in :data:`DATASETS` and in ``data/README.md`` (with where
each value was published). No network access is needed to import this module.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path

__all__ = ["RemoteFile", "DatasetSpec", "DATASETS", "FetchError", "fetch", "describe"]

CHUNK = 1 << 20
USER_AGENT = "fairprune-lite-fetch/1"


class FetchError(RuntimeError):
    """Every source of a file failed; the message lists each source and why."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it lands, how to check it, where to get it.

    ``urls`` maps a source name to the file's URL there. ``dest`` is the path relative to the
    data root. ``crlf``: a text file published with CRLF line ends; a mirror that stripped the
    CRs is accepted when restoring them gives the published checksum exactly. ``generate``
    returns the file's bytes without a download (source ``"generated"``); the checksum still
    decides. ``check`` validates a file that has no published checksum (raises ValueError)."""

    name: str
    dest: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    urls: Mapping[str, str] = field(default_factory=dict)
    required: bool = True
    crlf: bool = False
    generate: Callable[[], bytes] | None = None
    check: Callable[[Path], None] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset to fetch: its files, the known sources in order, and how to unpack it."""

    name: str
    files: tuple[RemoteFile, ...]
    sources: tuple[str, ...]
    unpack: Callable[[Path, Callable[[str], None]], None] | None = None
    notes: str = ""


# --------------------------------------------------------------------------------------------
# the two datasets
# --------------------------------------------------------------------------------------------
def _gdrive(file_id: str) -> str:
    # the direct-download endpoint; confirm=t skips the virus-scan page of files over 100 MB
    return f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t"


def _celeba_partition() -> bytes:
    """``list_eval_partition.txt`` from its rule: images 1-162,770 train (0), 162,771-182,637
    val (1), 182,638-202,599 test (2), one ``NNNNNN.jpg P`` line each with CRLF line ends. The
    published MD5 decides whether this reproduces the official file (it does)."""
    def part(i: int) -> int:
        return 0 if i <= 162770 else 1 if i <= 182637 else 2
    return "".join(f"{i:06d}.jpg {part(i)}\r\n" for i in range(1, 202600)).encode("ascii")


def _check_lfw_attributes(path: Path) -> None:
    """No checksum of lfw_attributes.txt is published: check its format and size instead."""
    from .faces import _read_lfw_attributes

    header, keys, _ = _read_lfw_attributes(path)
    if len(header) != 73 or len(keys) < 13000:
        raise ValueError(f"{path.name}: {len(header)} attributes and {len(keys)} rows; Kumar et al.'s "
                         "file has 73 attributes and a row for nearly each of LFW's 13,233 images")


def _unpack_celeba(root: Path, log: Callable[[str], None]) -> None:
    folder = root / "celeba"
    _unpack(folder / "img_align_celeba.zip", folder, "img_align_celeba", log)


def _unpack_lfw(root: Path, log: Callable[[str], None]) -> None:
    _unpack(root / "lfw.tgz", root, "lfw", log)


_HF = "https://huggingface.co/datasets"
CELEBA = DatasetSpec(
    name="celeba",
    sources=("generated", "google-drive", "huggingface", "gcs-mirror"),
    files=(
        RemoteFile(
            "img_align_celeba.zip", "celeba/img_align_celeba.zip", md5="00d2c5bc6d35e252742224ab0c1e8fcb",
            sha256="46fb89443c578308acf364d7d379fe1b9efb793042c0af734b6112e4fd3a8c74", size=1443490838,
            urls={"google-drive": _gdrive("0B7EVK8r0v71pZjFTYXZWM3FlRnM"),
                  "huggingface": f"{_HF}/AlexWortega/celeb/resolve/main/img_align_celeba.zip"},
        ),
        RemoteFile(
            "list_attr_celeba.txt", "celeba/list_attr_celeba.txt", md5="75e246fa4810816ffd6ee81facbd244c",
            sha256="f0e5da289d5ccf75ffe8811132694922b60f2af59256ed362afa03fefba324d0", size=26721026, crlf=True,
            urls={"google-drive": _gdrive("0B7EVK8r0v71pblRyaVFSWGxPY0U"),
                  "gcs-mirror": "https://storage.googleapis.com/count-dracula/list_attr_celeba.txt"},
        ),
        RemoteFile(
            "list_eval_partition.txt", "celeba/list_eval_partition.txt", md5="d32c9cbf5e040fd4025c592c306e6668",
            sha256="fc955bcb3ef8fbdf7d5640d9a8693a8431b5f2ee291a5c1449a1549e7e073fe7", size=2836386, crlf=True,
            generate=_celeba_partition,
            urls={"google-drive": _gdrive("0B7EVK8r0v71pY0NSMzRuSXJEVkk"),
                  "huggingface": f"{_HF}/hfaus/CelebA_bbox_and_facepoints/resolve/main/data/list_eval_partition.txt"},
        ),
        RemoteFile(
            "identity_CelebA.txt", "celeba/identity_CelebA.txt", md5="32bd1bd63d3c78cd57e08160ec5ed1e2",
            size=3424458, crlf=True, required=False,
            urls={"google-drive": _gdrive("1_ee_0u7vcNLOfNLegJRHmolfH5ICW-XS"),
                  "gcs-mirror": "https://storage.googleapis.com/count-dracula/labels.txt"},
        ),
        RemoteFile(
            "list_bbox_celeba.txt", "celeba/list_bbox_celeba.txt", md5="00566efa6fedff7a56946cd1c10f1c16",
            size=6082035, crlf=True, required=False,
            urls={"google-drive": _gdrive("0B7EVK8r0v71pbThiMVRxWXZ4dU0"),
                  "huggingface": f"{_HF}/hfaus/CelebA_bbox_and_facepoints/resolve/main/data/list_bbox_celeba.txt"},
        ),
        RemoteFile(
            "list_landmarks_align_celeba.txt", "celeba/list_landmarks_align_celeba.txt",
            md5="cc24ecafdb5b50baae59b03474781f8c",
            sha256="6c02a87569907f6db2ba99019085697596730e8129f67a3d61659f198c48d43b", size=12156055, crlf=True,
            required=False,
            urls={"google-drive": _gdrive("0B7EVK8r0v71pd0FJY3Blby1HUTQ"),
                  "gcs-mirror": "https://storage.googleapis.com/count-dracula/list_landmarks_align_celeba.txt"},
        ),
    ),
    unpack=_unpack_celeba,
    notes="official: the Google Drive folder linked from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
          "(file ids and MD5s as in torchvision's CelebA; SHA-256s and sizes as in TensorFlow Datasets)",
)

LFW = DatasetSpec(
    name="lfw",
    sources=("umass", "figshare", "columbia"),
    files=(
        RemoteFile(
            "lfw.tgz", "lfw.tgz", md5="a17d05bd522c52d84eca14327a23d494",
            sha256="055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0", size=180566744,
            urls={"umass": "http://vis-www.cs.umass.edu/lfw/lfw.tgz",
                  "figshare": "https://ndownloader.figshare.com/files/5976018"},
        ),
        RemoteFile(
            "lfw_attributes.txt", "lfw_attributes.txt", check=_check_lfw_attributes,
            urls={"columbia": "https://www.cs.columbia.edu/CAVE/databases/pubfig/download/lfw_attributes.txt"},
        ),
    ),
    unpack=_unpack_lfw,
    notes="official: http://vis-www.cs.umass.edu/lfw/ (MD5 as in torchvision's LFW); mirror: figshare, "
          "the copy scikit-learn downloads (SHA-256 from sklearn.datasets._lfw); attributes: Kumar et al., Columbia",
)

DATASETS: dict[str, DatasetSpec] = {"celeba": CELEBA, "lfw": LFW}


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------
def _digests(path: Path) -> tuple[str, str, int]:
    md5, sha = hashlib.md5(), hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            md5.update(chunk)
            sha.update(chunk)
            n += len(chunk)
    return md5.hexdigest(), sha.hexdigest(), n


def verify_file(rf: RemoteFile, path: Path) -> str | None:
    """None when ``path`` is ``rf`` (size and published checksums match), else what differs."""
    md5, sha, n = _digests(path)
    if rf.size is not None and n != rf.size:
        kind = "truncated" if n < rf.size else "too long"
        return f"{kind}: {n:,} bytes, expected {rf.size:,}"
    if rf.md5 and md5 != rf.md5:
        return f"MD5 {md5} differs from the published {rf.md5}"
    if rf.sha256 and sha != rf.sha256:
        return f"SHA-256 {sha} differs from the published {rf.sha256}"
    if rf.check is not None:
        try:
            rf.check(path)
        except ValueError as e:
            return f"not the expected file ({e})"
    return None


def _looks_like_html(head: bytes) -> bool:
    h = head.lstrip()[:512].lower()
    return h.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in h


def _restore_crlf(rf: RemoteFile, path: Path) -> bool:
    """A text mirror that stripped CR: restore them and keep the result if it then verifies."""
    data = path.read_bytes()
    if b"\r" in data:
        return False
    fixed = path.with_name(path.name + ".crlf")
    fixed.write_bytes(data.replace(b"\n", b"\r\n"))
    if verify_file(rf, fixed) is None:
        os.replace(fixed, path)
        return True
    fixed.unlink()
    return False


# --------------------------------------------------------------------------------------------
# one download
# --------------------------------------------------------------------------------------------
class _SourceFailed(Exception):
    """This source cannot deliver the file (the message says why); try the next one."""


class _Dropped(Exception):
    """The connection ended early; the .part file holds what arrived and can be resumed."""


def _open_part(path: Path, mode: str):
    """The .part file (a seam for tests that simulate a full disk)."""
    return open(path, mode)


def _download(url: str, part: Path, *, timeout: float, expected: int | None) -> None:
    """Fetch ``url`` into ``part``, resuming from its current length with a Range request."""
    have = part.stat().st_size if part.exists() else 0
    if expected is not None and have >= expected:
        return
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:
            return  # nothing beyond what we have; the checksum decides
        raise _SourceFailed(f"HTTP {e.code} {e.reason}") from None
    except (TimeoutError, urllib.error.URLError, ConnectionError, HTTPException, OSError) as e:
        raise _Dropped(f"no connection ({getattr(e, 'reason', e)})") from None
    with resp:
        status = resp.status
        ctype = (resp.headers.get("Content-Type") or "").lower()
        length = resp.headers.get("Content-Length")
        if status == 200 and have:
            have = 0  # the server ignored the Range header: start over
        elif status not in (200, 206):
            raise _SourceFailed(f"HTTP {status}")
        elif status == 206 and not (resp.headers.get("Content-Range") or "").startswith(f"bytes {have}-"):
            raise _SourceFailed(f"answered a request for bytes {have}- with Content-Range "
                                f"{resp.headers.get('Content-Range')!r}")
        first = resp.read(min(CHUNK, 1 << 16))
        if "text/html" in ctype or _looks_like_html(first):
            snippet = first[:200].decode("utf-8", "replace")
            words = ("quota", "sign in", "login", "too many", "error", "denied")
            reason = "a quota, sign-in or error page" if any(w in snippet.lower() for w in words) else "a web page"
            raise _SourceFailed(f"served an HTML page ({reason}) instead of the file")
        total = have + int(length) if length and length.isdigit() else None
        got = have
        try:
            with _open_part(part, "r+b" if have else "wb") as f:
                f.seek(have)
                f.truncate()
                chunk = first
                while chunk:
                    f.write(chunk)
                    got += len(chunk)
                    chunk = resp.read(CHUNK)
        except (TimeoutError, ConnectionError, HTTPException) as e:
            raise _Dropped(f"connection lost after {got:,} bytes ({type(e).__name__})") from None
        if total is not None and got < total:
            raise _Dropped(f"connection closed after {got:,} of {total:,} bytes")


def _attempts(rf: RemoteFile, name: str, url: str, part: Path, *, timeout: float, attempts: int,
              log: Callable[[str], None]) -> None:
    """Up to ``attempts`` downloads of ``url`` into ``part``, each resuming where the last stopped."""
    for attempt in range(1, attempts + 1):
        try:
            _download(url, part, timeout=timeout, expected=rf.size)
            return
        except _Dropped as e:
            have = part.stat().st_size if part.exists() else 0
            if attempt == attempts:
                kept = f" ({have:,} bytes kept in {part.name}, resumed from the next source)" if have else ""
                raise _SourceFailed(f"{e}; gave up after {attempts} attempts{kept}") from None
            how = f"resuming at byte {have:,}" if have else "retrying"
            log(f"{rf.name}: {name}: {e}; {how} (attempt {attempt + 1} of {attempts})")


def _fetch_file(rf: RemoteFile, root: Path, sources: Sequence[tuple[str, str | None]], *, timeout: float,
                attempts: int, log: Callable[[str], None]) -> str:
    """Get one file into place; returns the source that delivered it (or "present")."""
    dest = root / rf.dest
    if dest.is_file():
        problem = verify_file(rf, dest)
        if problem is None:
            log(f"{rf.name}: present and verified")
            return "present"
        log(f"{rf.name}: present but {problem}; fetching it again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = []
    usable = list(sources)
    if not usable:
        known = ", ".join(sorted(rf.urls) + (["generated"] if rf.generate else []))
        raise FetchError(f"{rf.name}: none of the chosen sources serves this file (sources that do: {known})")
    for k, (name, url) in enumerate(usable):
        nxt = f"; trying {usable[k + 1][0]}" if k + 1 < len(usable) else ""
        try:
            if url is None:  # generated from its published rule
                assert rf.generate is not None, rf.name  # only a file with a rule offers "generated"
                with _open_part(part, "wb") as f:
                    f.write(rf.generate())
            else:
                resumed = part.exists() and part.stat().st_size > 0
                _attempts(rf, name, url, part, timeout=timeout, attempts=attempts, log=log)
                problem = verify_file(rf, part)
                if problem is not None and resumed and not problem.startswith("truncated"):
                    # the bytes kept from an earlier source may be the wrong ones: once more from the start
                    log(f"{rf.name}: {name}: {problem} after resuming an earlier partial file; "
                        "downloading it again from the start")
                    part.unlink()
                    _attempts(rf, name, url, part, timeout=timeout, attempts=attempts, log=log)
            problem = verify_file(rf, part)
            if problem is not None and rf.crlf and not problem.startswith("too long") and _restore_crlf(rf, part):
                log(f"{rf.name}: {name} serves it with LF line ends; CRLF restored, checksum matches")
                problem = None
            if problem is not None:
                if not problem.startswith("truncated"):
                    part.unlink(missing_ok=True)  # wrong bytes: never resume from them
                raise _SourceFailed(problem)
        except _SourceFailed as e:
            failures.append(f"{name}: {e}")
            log(f"{rf.name}: {name} failed: {e}{nxt}")
            continue
        os.replace(part, dest)
        log(f"{rf.name}: fetched from {name}, {dest.stat().st_size:,} bytes, checksum verified")
        return name
    raise FetchError(f"{rf.name}: every source failed:\n  " + "\n  ".join(failures))


# --------------------------------------------------------------------------------------------
# unpacking
# --------------------------------------------------------------------------------------------
def _unpack(archive: Path, into: Path, top: str, log: Callable[[str], None]) -> None:
    """Unpack ``archive`` (whose members live under ``top/``) into ``into/top``: first into a
    temporary folder, renamed into place when complete; a marker records the archive's MD5."""
    final = into / top
    marker = final / ".fairprune_fetched.json"
    md5 = _digests(archive)[0]
    if final.is_dir():
        if marker.is_file() and json.loads(marker.read_text()).get("md5") == md5:
            log(f"{top}/: already unpacked from this {archive.name}")
            return
        log(f"{top}/: a folder of that name exists and was not unpacked from this {archive.name}; left as is")
        return
    tmp = into / f".{top}.unpacking"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)  # zipfile drops absolute paths and '..'
        else:
            with tarfile.open(archive) as t:
                if hasattr(tarfile, "data_filter"):
                    t.extractall(tmp, filter="data")  # refuses links and paths outside tmp
                else:  # Python without extraction filters: only plain files and folders inside tmp
                    for m in t.getmembers():
                        if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in Path(m.name).parts:
                            raise ValueError(f"{archive.name}: refusing member {m.name!r}")
                    t.extractall(tmp)
        if not (tmp / top).is_dir():
            raise ValueError(f"{archive.name} does not hold a {top}/ folder")
        (tmp / top / marker.name).write_text(json.dumps({"archive": archive.name, "md5": md5}))
        os.replace(tmp / top, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = sum(1 for _ in final.rglob("*.jpg"))
    log(f"{top}/: unpacked {n:,} images from {archive.name}")


# --------------------------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------------------------
def _resolve_sources(spec: DatasetSpec, rf: RemoteFile, chosen: Sequence[str]) -> list[tuple[str, str | None]]:
    """The (name, URL) pairs that serve ``rf`` among the chosen sources; URL None: generated."""
    out: list[tuple[str, str | None]] = []
    for s in chosen:
        if s.startswith(("http://", "https://")):
            out.append((s, s.rstrip("/") + "/" + rf.name))
        elif s == "generated":
            if rf.generate is not None:
                out.append((s, None))
        elif s in rf.urls:
            out.append((s, rf.urls[s]))
    return out


def _dataset_and_sources(dataset: str | DatasetSpec,
                         source: str | Sequence[str] | None) -> tuple[DatasetSpec, list[str]]:
    """The dataset's spec and the sources to try in order (all known ones by default); a
    ``ValueError`` naming an unknown dataset or source."""
    if isinstance(dataset, str):
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r} to fetch; known: {', '.join(DATASETS)}")
        spec = DATASETS[dataset]
    else:
        spec = dataset
    chosen = list(spec.sources) if source is None else [source] if isinstance(source, str) else list(source)
    for s in chosen:
        if not s.startswith(("http://", "https://")) and s not in spec.sources:
            raise ValueError(f"unknown source {s!r} for {spec.name}; known sources: {', '.join(spec.sources)} "
                             "(or a URL under which every file is served by its name)")
    if not chosen:
        raise ValueError("no source given")
    return spec, chosen


def _writable_root(root: str | Path) -> Path:
    """``root`` (``~`` expanded), created if needed and proven writable; a ``ValueError`` naming it otherwise."""
    root = Path(root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".fairprune_write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"data root {root} is not a writable folder ({e.strerror or e})") from None
    return root


def fetch(
    dataset: str | DatasetSpec,
    root: str | Path,
    *,
    source: str | Sequence[str] | None = None,
    optional: bool = False,
    timeout: float = 30.0,
    attempts: int = 3,
    remove_archives: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Download ``dataset`` (``"celeba"`` or ``"lfw"``) into ``root`` in the loaders' layout.

    ``source``: a known source name, a base URL (each file is fetched as ``<URL>/<file name>``),
    or a sequence of them tried in order; default: every known source in order. ``optional``
    also fetches the files the loaders do not need (CelebA's identities, boxes, landmarks).
    Returns file name -> the source that delivered it. Raises ValueError for bad arguments or an
    unwritable root, :class:`FetchError` when every source of a file failed."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    spec, chosen = _dataset_and_sources(dataset, source)
    if float(timeout) <= 0 or int(attempts) < 1:
        raise ValueError(f"timeout must be > 0 and attempts >= 1, got {timeout} and {attempts}")
    root = _writable_root(root)
    files = [rf for rf in spec.files if rf.required or optional]
    done: dict[str, str] = {}
    failed: list[str] = []
    try:
        for rf in files:  # every file is tried, so one refusing source costs only its own files
            try:
                done[rf.name] = _fetch_file(rf, root, _resolve_sources(spec, rf, chosen), timeout=float(timeout),
                                            attempts=int(attempts), log=log)
            except FetchError as e:
                failed.append(str(e))
        if failed:
            raise FetchError("\n".join(failed) + (f"\n(fetched and verified: {', '.join(done)}; rerun to resume the "
                                                  "rest, or name another --source)" if done else ""))
        if spec.unpack is not None:
            spec.unpack(root, log)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise FetchError(f"no space left on the device of {root} ({e.filename or 'while writing'}); "
                             "partial downloads are kept as *.part: free space and rerun to resume") from None
        raise FetchError(f"writing under {root} failed: {e}") from None
    if remove_archives:
        for rf in files:
            if rf.name.endswith((".zip", ".tgz")):
                (root / rf.dest).unlink(missing_ok=True)
    return done


def describe(spec: DatasetSpec) -> str:
    """A plain-text table of a dataset's files, sources and checksums."""
    lines = [f"{spec.name}: sources in order: {', '.join(spec.sources)}", f"  ({spec.notes})"]
    for rf in spec.files:
        sums = ", ".join(f"{k} {v}" for k, v in (("md5", rf.md5), ("sha256", rf.sha256)) if v)
        lines.append(f"{rf.name}{'' if rf.required else ' (optional)'}: "
                     f"{f'{rf.size:,} bytes, ' if rf.size else ''}{sums or 'no published checksum (format checked)'}")
        if rf.generate:
            lines.append("    generated: from the file's published rule, checked against the MD5")
        for name, url in rf.urls.items():
            lines.append(f"    {name}: {url}")
    return "\n".join(lines)
