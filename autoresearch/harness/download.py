"""Resumable, checksummed downloads from the Hugging Face hub (or any server with the same URL layout).

- The endpoint is ``$HF_ENDPOINT`` (default https://huggingface.co); a dataset file lives at
  ``{endpoint}/datasets/{repo}/resolve/{revision}/{filename}``.
- Bytes go to ``<name>.part`` first. A dropped connection, or a new process finding a ``.part`` file,
  continues with an HTTP ``Range`` request; transient failures are retried a few times with backoff.
- The sha256 of the finished file is always computed. When an expected value is known (pinned by the
  caller, or sent by the server: the hub puts the sha256 of LFS files in ``X-Linked-ETag`` / ``ETag``), a
  mismatch deletes the file and raises :class:`DataError`.
- ``$HF_TOKEN``, when set, is sent as a bearer token to the endpoint's host only, and never logged.
- No network fails fast (10 s connect timeout, no retries on a refused connection or a DNS failure) with
  a message naming the offline alternatives.

A finished file is kept with a small ``<name>.sha256`` sidecar; a later call reuses it without network.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx

from ..paths import downloads_root
from ..progress import NullProgress, Progress, Task
from .manifest import DataError, sha256_file

DEFAULT_ENDPOINT = "https://huggingface.co"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
RETRIES = 5
BACKOFF_S = 1.0
_MAX_REDIRECTS = 10
_SHA256_RE = re.compile(r"[0-9a-f]{64}")

OFFLINE_HINT = (
    "To work offline use `--dataset stdlib` (the Python standard library of this machine, no download) "
    "or a local path (`--dataset ./corpus.txt`: a .txt, .jsonl or .parquet file, or a folder of them)."
)


@dataclass(frozen=True)
class Downloaded:
    """A finished, checksummed file."""

    path: Path
    filename: str
    url: str
    size: int
    sha256: str
    expected_sha256: str | None  # what the pin or the server promised; None when neither said anything
    reused: bool = False  # True when an earlier finished download was used without network


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_url(repo: str, filename: str, revision: str = "main", endpoint: str | None = None) -> str:
    """``{endpoint}/datasets/{repo}/resolve/{revision}/{filename}``."""
    base = (endpoint or hub_endpoint()).rstrip("/")
    return f"{base}/datasets/{repo}/resolve/{quote(revision, safe='')}/{quote(filename)}"


def sha256_from_etag(value: str | None) -> str | None:
    """The sha256 in an ETag-like header (``"abc..."``, ``W/"abc..."``), or None if it is something else."""
    if not value:
        return None
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    v = v.strip().strip('"').lower()
    return v if _SHA256_RE.fullmatch(v) else None


def hub_download(
    repo: str,
    filename: str,
    *,
    dataset: str,
    revision: str = "main",
    progress: Progress = NullProgress(),
    expected_sha256: str | None = None,
) -> Downloaded:
    """Download one file of a hub dataset repo into ``downloads_root()/<dataset>/<filename>``."""
    dest = downloads_root() / dataset / filename
    return download_file(hub_url(repo, filename, revision), dest, progress=progress, expected_sha256=expected_sha256)


def download_file(
    url: str,
    dest: Path,
    *,
    progress: Progress = NullProgress(),
    expected_sha256: str | None = None,
    token: str | None = None,
    retries: int = RETRIES,
    backoff_s: float | None = None,
) -> Downloaded:
    """Download ``url`` to ``dest`` (resumable, checksummed); see the module docstring."""
    dest = Path(dest)
    expected_sha256 = expected_sha256.lower() if expected_sha256 else None
    reused = _reuse(dest, url, expected_sha256)
    if reused is not None:
        return reused
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise DataError(f"{dest.name} is not downloaded yet and HF_HUB_OFFLINE is set. {OFFLINE_HINT}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    token = token if token is not None else (os.environ.get("HF_TOKEN") or None)
    transfer = _Transfer(url, dest, progress, expected_sha256, token)
    transfer.run(retries, BACKOFF_S if backoff_s is None else backoff_s)
    return transfer.finish()


# -- internals -------------------------------------------------------------------------------------------


def _sidecar(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _part_meta(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


def _reuse(dest: Path, url: str, expected: str | None) -> Downloaded | None:
    side = _sidecar(dest)
    if not (dest.exists() and side.exists()):
        return None
    try:
        rec = json.loads(side.read_text())
        size, sha = int(rec["size"]), str(rec["sha256"])
    except (ValueError, KeyError, TypeError, OSError):
        return None
    if dest.stat().st_size != size or (expected is not None and expected != sha):
        return None
    return Downloaded(dest, dest.name, rec.get("url", url), size, sha, rec.get("expected_sha256"), reused=True)


class _Retry(Exception):
    """A transient failure: try again after a pause."""


class _Transfer:
    def __init__(self, url: str, dest: Path, progress: Progress, pinned: str | None, token: str | None) -> None:
        self.url, self.dest, self.progress, self.pinned, self.token = url, dest, progress, pinned, token
        self.part = _part(dest)
        self.origin = _origin(url)
        self.expected: str | None = pinned  # the pin wins; else whatever the server says
        self.server_sha: str | None = None
        self.total: int | None = None
        self.task: Task | None = None
        self.received = 0  # bytes received by this call, to tell "offline" from "connection dropped"
        self.complete = False

    # The retry loop ------------------------------------------------------------------------------------
    def run(self, retries: int, backoff_s: float) -> None:
        timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        try:
            with httpx.Client(timeout=timeout, follow_redirects=False) as client:
                attempt = 0
                while True:
                    try:
                        self._attempt(client)
                        return
                    except (httpx.ConnectError, httpx.ConnectTimeout) as e:
                        if self.received == 0:  # never reached the server: offline, wrong endpoint, DNS
                            raise DataError(
                                f"Cannot reach {self.origin} to download {self.dest.name} ({_reason(e)}). "
                                f"Check the network (and HF_ENDPOINT if set). {OFFLINE_HINT}"
                            ) from e
                        last: Exception = e
                    except (httpx.TransportError, _Retry) as e:
                        last = e
                    attempt += 1
                    if attempt > retries:
                        raise DataError(
                            f"Downloading {self.dest.name} from {self.origin} failed after {retries + 1} attempts "
                            f"({_reason(last)}). The partial file is kept and the next try resumes it. {OFFLINE_HINT}"
                        ) from last
                    time.sleep(min(backoff_s * 2 ** (attempt - 1), 30.0))
        finally:
            if self.task is not None:
                self.task.close()

    # One request ---------------------------------------------------------------------------------------
    def _attempt(self, client: httpx.Client) -> None:
        offset = self.part.stat().st_size if self.part.exists() else 0
        if offset and not self._part_matches():
            self._restart()
            offset = 0
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        resp, linked = self._open(client, headers)
        try:
            self._learn_checksum(resp, linked)
            status = resp.status_code
            if status == 416 and offset:
                total = _content_range_total(resp.headers.get("content-range"))
                if total == offset:
                    self.total, self.complete = total, True
                    return
                self._restart()
                raise _Retry("the server refused to resume the partial file; starting over")
            if status in (401, 403):
                raise DataError(
                    f"Access to {self.url} was refused (HTTP {status}). If this dataset needs a login, set "
                    f"HF_TOKEN to a Hugging Face access token. {OFFLINE_HINT}"
                )
            if status == 404:
                raise DataError(f"{self.url} was not found (HTTP 404): the file or repository moved. {OFFLINE_HINT}")
            if status == 429 or status >= 500:
                raise _Retry(f"HTTP {status}")
            if status not in (200, 206):
                raise DataError(f"Unexpected HTTP {status} for {self.url}. {OFFLINE_HINT}")
            if status == 206:
                start = _content_range_start(resp.headers.get("content-range"))
                if start != offset:
                    self._restart()
                    raise _Retry("the server resumed at the wrong offset; starting over")
                self.total = _content_range_total(resp.headers.get("content-range"))
            else:
                if offset:  # the server ignored the Range header: start over from the first byte
                    self._restart()
                    offset = 0
                length = resp.headers.get("content-length")
                self.total = int(length) if length and length.isdigit() else None
            self._save_part_meta()
            self._ensure_task(offset)
            with open(self.part, "ab" if offset else "wb") as f:
                for chunk in resp.iter_raw():  # unbuffered: bytes received before a drop are kept
                    f.write(chunk)
                    self.received += len(chunk)
                    assert self.task is not None
                    self.task.update(len(chunk))
        finally:
            resp.close()
        size = self.part.stat().st_size
        if self.total is not None and size < self.total:
            raise _Retry(f"the connection ended after {size} of {self.total} bytes")
        if self.total is not None and size > self.total:
            self._restart()
            raise _Retry("the partial file is longer than the remote file; starting over")
        self.complete = True

    def _open(self, client: httpx.Client, headers: dict[str, str]) -> tuple[httpx.Response, dict[str, str]]:
        """GET with redirects followed by hand: the hub's redirect carries the checksum headers."""
        url = self.url
        linked: dict[str, str] = {}
        for _ in range(_MAX_REDIRECTS):
            h = dict(headers)
            if self.token and _origin(url) == self.origin:
                h["Authorization"] = f"Bearer {self.token}"
            resp = client.send(client.build_request("GET", url, headers=h), stream=True)
            if not resp.is_redirect:
                return resp, linked
            for key in ("x-linked-etag", "x-linked-size", "etag"):
                if key in resp.headers and key not in linked:
                    linked[key] = resp.headers[key]
            location = resp.headers.get("location")
            resp.close()
            if not location:
                raise DataError(f"{self.url} redirected without a location. {OFFLINE_HINT}")
            url = urljoin(url, location)
        raise DataError(f"{self.url} redirected too many times. {OFFLINE_HINT}")

    def _learn_checksum(self, resp: httpx.Response, linked: dict[str, str]) -> None:
        sha = (
            sha256_from_etag(linked.get("x-linked-etag"))
            or sha256_from_etag(resp.headers.get("x-linked-etag"))
            or sha256_from_etag(linked.get("etag"))
            or sha256_from_etag(resp.headers.get("etag"))
        )
        if sha:
            self.server_sha = sha
            if self.pinned is None:
                self.expected = sha

    # The .part file and its metadata (which remote file it belongs to) ---------------------------------
    def _part_matches(self) -> bool:
        meta = _part_meta(self.dest)
        try:
            rec = json.loads(meta.read_text())
        except (OSError, ValueError):
            return False
        return rec.get("url") == self.url

    def _save_part_meta(self) -> None:
        meta = _part_meta(self.dest)
        rec: dict[str, Any] = {"url": self.url, "sha256": self.server_sha, "total": self.total}
        meta.write_text(json.dumps(rec))

    def _restart(self) -> None:
        self.part.unlink(missing_ok=True)
        if self.task is not None:
            self.task.close()
            self.task = None

    def _ensure_task(self, offset: int) -> None:
        if self.task is None:
            self.task = self.progress.task(f"download {self.dest.name}", total=self.total, unit="B", initial=offset)

    # Checksum and rename ---------------------------------------------------------------------------------
    def finish(self) -> Downloaded:
        sha = sha256_file(self.part)
        if self.expected is not None and sha != self.expected:
            self.part.unlink(missing_ok=True)
            _part_meta(self.dest).unlink(missing_ok=True)
            origin = "pinned" if self.pinned is not None else "sent by the server"
            raise DataError(
                f"{self.dest.name} from {self.origin} is corrupt: its sha256 is {sha} but {origin} is "
                f"{self.expected}. The file was deleted; run the command again to download it afresh."
            )
        size = self.part.stat().st_size
        os.replace(self.part, self.dest)
        _part_meta(self.dest).unlink(missing_ok=True)
        rec = {"url": self.url, "size": size, "sha256": sha, "expected_sha256": self.expected}
        _sidecar(self.dest).write_text(json.dumps(rec, indent=1) + "\n")
        return Downloaded(self.dest, self.dest.name, self.url, size, sha, self.expected)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    return int(m.group(1)) if m else None


def _content_range_total(value: str | None) -> int | None:
    m = re.match(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", value or "")
    return int(m.group(1)) if m else None
