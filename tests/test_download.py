"""Downloads against a real HTTP server on 127.0.0.1 that speaks the hub's URL layout (no mocks)."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import autoresearch.harness.download as download
from autoresearch.harness.download import download_file, hub_download, hub_url, sha256_from_etag
from autoresearch.harness.manifest import SPLITS, DataError, open_shard, verify
from autoresearch.harness.prepare import prepare
from autoresearch.harness.sources import EOT
from autoresearch.harness.tokenizer import decode_doc, load_tokenizer
from autoresearch.paths import downloads_root
from autoresearch.progress import RecordingProgress

REPO = "someone/data"


@dataclass
class Served:
    data: bytes
    advertised_sha: str | None = None  # None: the real sha256
    drop_after: int | None = None  # close the connection after this many body bytes ...
    drops_left: int = 0  # ... on this many requests


@dataclass
class HubServer:
    """A tiny hub: /datasets/{repo}/resolve/{rev}/{file}, Range, ETag / X-Linked-ETag, optional redirect."""

    files: dict[str, Served] = field(default_factory=dict)
    redirect_to: str | None = None  # origin of a "CDN" the resolve URL redirects to (checksum on the redirect)
    requests: list[dict[str, str | None]] = field(default_factory=list)
    port: int = 0

    def add(self, name: str, data: bytes, repo: str = REPO, **kw: object) -> None:
        self.files[f"/datasets/{repo}/resolve/main/{name}"] = Served(data, **kw)  # type: ignore[arg-type]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gets(self, suffix: str = "") -> list[dict[str, str | None]]:
        return [r for r in self.requests if r["path"].endswith(suffix)]  # type: ignore[union-attr]


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = self.path
            hub.requests.append(
                {"path": path, "range": self.headers.get("Range"), "auth": self.headers.get("Authorization")}
            )
            served = hub.files.get(path.replace("/cdn", "", 1) if path.startswith("/cdn/") else path)
            if served is None:
                self._reply(404, b"not found")
                return
            sha = served.advertised_sha or hashlib.sha256(served.data).hexdigest()
            if hub.redirect_to and not path.startswith("/cdn/"):
                self.send_response(302)
                self.send_header("Location", f"{hub.redirect_to}/cdn{path}")
                self.send_header("X-Linked-ETag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(served.data)))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, start = served.data, 0
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if not path.startswith("/cdn/"):
                self.send_header("ETag", f'"{sha}"')
            else:
                self.send_header("ETag", '"cdn-md5-like-etag"')
            self.end_headers()
            if served.drops_left > 0 and served.drop_after is not None:
                served.drops_left -= 1
                self.wfile.write(body[: served.drop_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

        def _reply(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def serve() -> Iterator[callable]:  # type: ignore[type-arg]
    servers: list[ThreadingHTTPServer] = []

    def start(hub: HubServer) -> HubServer:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
        httpd.daemon_threads = True
        hub.port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(httpd)
        return hub

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def hub(serve, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HubServer:  # type: ignore[no-untyped-def]
    server = serve(HubServer())
    monkeypatch.setenv("HF_ENDPOINT", server.origin)
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(download, "BACKOFF_S", 0.05)
    return server


def payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# -- downloads -------------------------------------------------------------------------------------------


def test_normal_download_with_progress(hub: HubServer) -> None:
    data = payload(300_000)
    hub.add("file.bin", data)
    rec = RecordingProgress()
    got = hub_download(REPO, "file.bin", dataset="demo", progress=rec)
    assert got.path == downloads_root() / "demo" / "file.bin"
    assert got.path.read_bytes() == data and got.size == len(data)
    assert got.sha256 == hashlib.sha256(data).hexdigest() == got.expected_sha256
    assert got.url == f"{hub.origin}/datasets/{REPO}/resolve/main/file.bin"
    [task] = rec.tasks
    assert "file.bin" in task.description and task.total == len(data) and task.done == len(data) and task.closed
    assert sorted(p.name for p in got.path.parent.iterdir()) == ["file.bin", "file.bin.sha256"]
    # A second call reuses the finished file without touching the network.
    n = len(hub.requests)
    again = hub_download(REPO, "file.bin", dataset="demo")
    assert again.reused and again.sha256 == got.sha256 and len(hub.requests) == n


def test_dropped_connection_resumes_with_range(hub: HubServer) -> None:
    data = payload(500_000, seed=1)
    hub.add("big.bin", data, drop_after=123_457, drops_left=1)
    rec = RecordingProgress()
    got = hub_download(REPO, "big.bin", dataset="demo", progress=rec)
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert got.path.read_bytes() == data
    ranges = [r["range"] for r in hub.gets("big.bin")]
    assert ranges == [None, "bytes=123457-"]
    assert rec.tasks[0].done == len(data)
    assert not (got.path.parent / "big.bin.part").exists()


def test_restart_continues_a_part_file(hub: HubServer) -> None:
    data = payload(200_000, seed=2)
    hub.add("p.bin", data, drop_after=50_000, drops_left=1)
    dest = downloads_root() / "demo" / "p.bin"
    url = hub_url(REPO, "p.bin")
    with pytest.raises(DataError, match="resumes"):
        download_file(url, dest, retries=0)  # like a process that died: the .part file stays
    assert (dest.parent / "p.bin.part").stat().st_size == 50_000 and not dest.exists()
    rec = RecordingProgress()
    got = download_file(url, dest, progress=rec)
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert [r["range"] for r in hub.gets("p.bin")] == [None, "bytes=50000-"]
    assert rec.tasks[0].done == len(data)  # started at the part's size


def test_checksum_mismatch_deletes_the_file(hub: HubServer) -> None:
    hub.add("bad.bin", payload(10_000), advertised_sha="ab" * 32)
    with pytest.raises(DataError, match="corrupt") as e:
        hub_download(REPO, "bad.bin", dataset="demo")
    assert "ab" * 32 in str(e.value)
    folder = downloads_root() / "demo"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_pinned_checksum_wins(hub: HubServer) -> None:
    data = payload(5_000)
    hub.add("pin.bin", data)
    with pytest.raises(DataError, match="pinned"):
        hub_download(REPO, "pin.bin", dataset="demo", expected_sha256="00" * 32)
    got = hub_download(REPO, "pin.bin", dataset="demo", expected_sha256=hashlib.sha256(data).hexdigest().upper())
    assert got.path.read_bytes() == data


def test_redirect_checksum_and_token_stay_on_the_endpoint(serve, hub: HubServer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cdn = serve(HubServer(files=hub.files))
    hub.redirect_to = cdn.origin
    data = payload(40_000, seed=3)
    hub.add("lfs.bin", data)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    rec = RecordingProgress()
    got = hub_download(REPO, "lfs.bin", dataset="demo", progress=rec)
    assert got.expected_sha256 == hashlib.sha256(data).hexdigest()  # taken from X-Linked-ETag on the redirect
    assert [r["auth"] for r in hub.requests] == ["Bearer hf_secret_token_value"]
    assert [r["auth"] for r in cdn.requests] == [None]  # never sent to another host
    assert "hf_secret" not in json.dumps([t.description for t in rec.tasks] + rec.messages)
    # A wrong checksum on the redirect is caught although the CDN's own ETag is not a sha256.
    hub.add("lfs2.bin", data, advertised_sha="cd" * 32)
    with pytest.raises(DataError, match="corrupt") as e:
        hub_download(REPO, "lfs2.bin", dataset="demo")
    assert "hf_secret" not in str(e.value)


def test_server_ignoring_range_starts_over(hub: HubServer) -> None:
    data = payload(80_000, seed=4)
    hub.add("r.bin", data)
    dest = downloads_root() / "demo" / "r.bin"
    dest.parent.mkdir(parents=True)
    # A .part file that belongs to another URL must not be resumed.
    (dest.parent / "r.bin.part").write_bytes(b"garbage")
    (dest.parent / "r.bin.part.json").write_text(json.dumps({"url": "http://elsewhere/r.bin"}))
    got = download_file(hub_url(REPO, "r.bin"), dest)
    assert got.path.read_bytes() == data and hub.gets("r.bin")[0]["range"] is None


def test_missing_file_is_a_clear_error(hub: HubServer) -> None:
    with pytest.raises(DataError, match="404") as e:
        hub_download(REPO, "nope.bin", dataset="demo")
    assert "stdlib" in str(e.value)


def test_connection_refused_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path))
    t0 = time.monotonic()
    with pytest.raises(DataError) as e:
        prepare("tinystories", 300, root=tmp_path / "data")
    assert time.monotonic() - t0 < 5
    msg = str(e.value)
    assert "--dataset stdlib" in msg and "local path" in msg and f"127.0.0.1:{port}" in msg


def test_sha256_from_etag() -> None:
    sha = "0123456789abcdef" * 4
    assert sha256_from_etag(f'"{sha}"') == sha
    assert sha256_from_etag(f'W/"{sha.upper()}"') == sha
    assert sha256_from_etag('"0123456789abcdef0123456789abcdef01234567"') is None  # a git sha1
    assert sha256_from_etag(None) is None


# -- prepare end to end against the fake hub ----------------------------------------------------------------


def fake_stories(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    names = ["Tom", "Lily", "Max", "Sue", "Ben", "Mia"]
    things = ["ball", "kite", "cake", "dog", "tree", "boat", "star"]
    out = []
    for _ in range(n):
        a, b = rng.choice(names), rng.choice(things)
        out.append(
            f"Once upon a time, {a} had a {b}. {a} loved the {b} very much. "
            f"One day the {b} was gone! {a} looked and looked. Then {a} smiled, because the {b} was under the bed."
        )
    return out


def test_prepare_tinystories_end_to_end(hub: HubServer, tmp_path: Path) -> None:
    train, valid = fake_stories(150, 0), fake_stories(30, 1)
    hub.add("TinyStoriesV2-GPT4-train.txt", f"\n{EOT}\n".join(train).encode(), repo="roneneldan/TinyStories")
    hub.add("TinyStoriesV2-GPT4-valid.txt", f"\n{EOT}\n".join(valid).encode(), repo="roneneldan/TinyStories")
    rec = RecordingProgress()
    prep = prepare("tinystories", 300, root=tmp_path / "data", progress=rec)
    m = prep.manifest
    assert m.dataset == "tinystories" and prep.directory.name == "tinystories-v300"
    st = m.stats["splits"]
    assert st["train"]["documents"] == 150
    assert st["val"]["documents"] + st["test"]["documents"] == 30 and st["val"]["documents"] and st["test"]["documents"]
    files = {f["file"]: f for f in m.source["files"]}
    assert files["TinyStoriesV2-GPT4-train.txt"]["role"] == "train"
    assert files["TinyStoriesV2-GPT4-valid.txt"]["role"] == "heldout"
    assert all(len(f["sha256"]) == 64 and f["url"].startswith(hub.origin) for f in files.values())
    assert sum(1 for t in rec.tasks if t.description.startswith("download")) == 2
    enc = load_tokenizer(prep.directory / "tokenizer.json")
    arr = np.asarray(open_shard(prep.directory, m, m.splits["train"][0]))
    starts = [*np.flatnonzero(arr == m.bos_id), arr.size]
    assert [decode_doc(enc, arr[a:b]) for a, b in zip(starts, starts[1:], strict=False)] == [s.strip() for s in train]
    verify(prep.directory, use_cache=False)
    # Preparing again (forced) reuses the downloads: no new requests.
    n = len(hub.requests)
    again = prepare("tinystories", 300, root=tmp_path / "data", force=True)
    assert len(hub.requests) == n and again.manifest.splits == m.splits


def test_prepare_climbmix_with_parquet_shards(hub: HubServer, tmp_path: Path) -> None:
    repo = "karpathy/climbmix-400b-shuffle"

    def shard(seed: int, n: int) -> bytes:
        buf = io.BytesIO()
        pq.write_table(pa.table({"text": fake_stories(n, seed)}), buf, row_group_size=16)
        return buf.getvalue()

    for i in range(2):
        hub.add(f"shard_{i:05d}.parquet", shard(i, 60), repo=repo)
    hub.add("shard_06542.parquet", shard(99, 40), repo=repo)
    prep = prepare("climbmix", 300, root=tmp_path / "data", shards=2)
    m = prep.manifest
    files = [f["file"] for f in m.source["files"]]
    assert files == ["shard_00000.parquet", "shard_00001.parquet", "shard_06542.parquet"]
    st = m.stats["splits"]
    assert st["train"]["documents"] == 120 and st["val"]["documents"] + st["test"]["documents"] == 40
    assert all(st[s]["documents"] for s in SPLITS)
    assert m.source["options"]["shards"] == 2 and m.source["heldout_max_bytes"] > 0
    assert not [r for r in hub.requests if "shard_00002" in str(r["path"])]
    verify(prep.directory, use_cache=False)


@pytest.mark.slow
def test_large_download_survives_several_drops(hub: HubServer) -> None:
    data = payload(24_000_000, seed=5)
    hub.add("large.bin", data, drop_after=5_000_000, drops_left=3)
    rec = RecordingProgress()
    got = hub_download(REPO, "large.bin", dataset="demo", progress=rec)
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    assert [r["range"] for r in hub.gets("large.bin")] == [
        None, "bytes=5000000-", "bytes=10000000-", "bytes=15000000-"
    ]
    assert rec.tasks[0].done == len(data)
