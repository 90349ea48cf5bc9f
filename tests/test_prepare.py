"""Data preparation, for real: stdlib slices, local files, the tokenizer, shards, manifest and statistics."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autoresearch.harness.manifest import (
    MANIFEST_NAME,
    SPLITS,
    DataError,
    Manifest,
    load_token_bytes,
    open_shard,
    read_manifest,
    verify,
)
from autoresearch.harness.prepare import (
    Prepared,
    dataset_dir,
    list_prepared,
    load_prepared,
    prepare,
)
from autoresearch.harness.sources import (
    DATASETS,
    EOT,
    PARAGRAPH_BOUNDARY,
    chunk_text,
    open_source,
    read_txt,
    resolve_dataset,
)
from autoresearch.harness.splits import plan_splits
from autoresearch.harness.tokenizer import (
    BOS,
    byte_level_encoding,
    decode_doc,
    encode_docs,
    load_tokenizer,
    token_byte_lengths,
)
from autoresearch.progress import RecordingProgress

SLICE = 1_200_000
SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")


# -- helpers ---------------------------------------------------------------------------------------------


def split_docs(directory: Path, manifest: Manifest, split: str) -> Iterator[np.ndarray]:
    """Token ids of every document of a split (without its BOS), in order."""
    for shard in manifest.splits[split]:
        arr = np.asarray(open_shard(directory, manifest, shard))
        assert arr[0] == manifest.bos_id, "every shard starts with a document"
        starts = np.flatnonzero(arr == manifest.bos_id)
        assert len(starts) == shard.docs
        for a, b in zip(starts, [*starts[1:], arr.size], strict=True):
            yield arr[a + 1 : b]


def expected_docs(dataset: str | Path, max_bytes: int | None = None) -> dict[str, list[str]]:
    """What the source says each split should hold, read independently of the shards."""
    source = open_source(resolve_dataset(dataset), max_bytes=max_bytes)
    plan = plan_splits((u.id, u.role) for u in source.units)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for unit, index, text in source.documents():
        out[plan.split_of(unit.id, index)].append(text)
    return out


def assert_roundtrip(prep: Prepared, dataset: str | Path, max_bytes: int | None = None) -> None:
    enc = load_tokenizer(prep.directory / "tokenizer.json")
    expected = expected_docs(dataset, max_bytes)
    for split in SPLITS:
        got = [decode_doc(enc, ids) for ids in split_docs(prep.directory, prep.manifest, split)]
        assert got == expected[split], split
        assert prep.manifest.stats["splits"][split]["documents"] == len(expected[split])
        assert prep.manifest.stats["splits"][split]["bytes"] == sum(len(t.encode()) for t in expected[split])


def write_story_text(path: Path, paragraphs: int = 60, extra: str = "") -> str:
    words = "the quick brown fox jumps over lazy dogs while seven wizards quietly hum jazz tunes".split()
    paras = []
    for i in range(paragraphs):
        sentence = " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(40 + i % 13))
        paras.append(f"Paragraph {i}. {sentence.capitalize()}.{extra}")
    text = "\n\n".join(paras) + "\n"
    path.write_text(text, encoding="utf-8")
    return text


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def stdlib_slice(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    root = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTORESEARCH_CACHE", str(root / "cache"))
        return prepare("stdlib", 512, root=root, max_bytes=SLICE, shard_tokens=100_000)


# -- stdlib ----------------------------------------------------------------------------------------------


def test_stdlib_slice_is_complete(stdlib_slice: Prepared) -> None:
    d, m = stdlib_slice.directory, stdlib_slice.manifest
    assert d.name == "stdlib-v512"
    assert (d / MANIFEST_NAME).is_file() and read_manifest(d).digest == m.digest
    assert m.dataset == "stdlib" and m.vocab_size == 512 and m.bos_id == 511 and m.dtype == "uint16"
    for split in SPLITS:
        assert m.splits[split], split
        assert m.split_tokens(split) == m.stats["splits"][split]["tokens"]
    assert len(m.splits["train"]) > 1, "shard_tokens=100_000 must give several train shards"
    assert all(s.tokens <= 100_000 for s in m.splits["train"])
    assert m.source["kind"] == "stdlib" and m.source["python_version"].count(".") == 2
    assert m.source["files"] > 3 and m.source["bytes"] <= SLICE
    assert m.source["tokenizer"]["train_cap_bytes"] > 0 and m.created
    others = {p.name for p in d.iterdir() if not p.name.endswith(".bin")} - {".verified.json"}
    assert others == {"manifest.json", "token_bytes.npy", "tokenizer.json"}
    assert {p.name for p in d.glob("*.bin")} == {s.file for split in SPLITS for s in m.splits[split]}
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".stdlib-v512")], "no build leftovers"
    verify(d, use_cache=False)


def test_stdlib_shards_decode_to_the_source_documents(stdlib_slice: Prepared) -> None:
    assert_roundtrip(stdlib_slice, "stdlib", SLICE)


def test_stdlib_chunks_of_one_file_stay_in_one_split(stdlib_slice: Prepared) -> None:
    source = open_source(resolve_dataset("stdlib"), max_bytes=SLICE)
    plan = plan_splits((u.id, u.role) for u in source.units)
    assert all(plan.unit_split(u.id) in SPLITS for u in source.units)
    long = [u for u in source.units if u.size > 6000]
    assert long and all(len(list(u.read())) > 1 for u in long)


def test_byte_counts_and_statistics(stdlib_slice: Prepared) -> None:
    d, m = stdlib_slice.directory, stdlib_slice.manifest
    tb = load_token_bytes(d)
    assert tb.dtype == np.int32 and tb.shape == (512,) and tb[m.bos_id] == 0 and tb[:256].tolist() == [1] * 256
    for split in SPLITS:
        total = sum(int(tb[ids].sum()) for ids in split_docs(d, m, split))
        assert total == m.stats["splits"][split]["bytes"]
    bpb = m.stats["unigram_bpb"]
    assert math.isfinite(bpb) and 2.0 < bpb < 8.0
    assert 1.5 < m.stats["bytes_per_token"] < 6.0


def test_preparation_is_deterministic(stdlib_slice: Prepared, tmp_path: Path) -> None:
    again = prepare("stdlib", 512, root=tmp_path / "again", max_bytes=SLICE, shard_tokens=100_000)
    assert again.directory != stdlib_slice.directory
    # `created` is the only field that may differ (a timestamp); everything that identifies data is equal
    a = dataclasses.replace(stdlib_slice.manifest, created="")
    b = dataclasses.replace(again.manifest, created="")
    assert a.digest == b.digest
    assert a.splits == b.splits and a.tokenizer_sha256 == b.tokenizer_sha256


def test_reuse_force_and_changed_options(stdlib_slice: Prepared, tmp_path: Path) -> None:
    root = tmp_path / "r"
    first = prepare("stdlib", 300, root=root, max_bytes=300_000)
    assert not first.reused
    second = prepare("stdlib", 300, root=root, max_bytes=300_000)
    assert second.reused and second.manifest.digest == first.manifest.digest
    forced = prepare("stdlib", 300, root=root, max_bytes=300_000, force=True)
    assert not forced.reused and forced.manifest.splits == first.manifest.splits
    other = prepare("stdlib", 300, root=root, max_bytes=200_000)
    assert not other.reused and other.manifest.source["options"]["max_bytes"] == 200_000
    assert [d.name for d, _ in list_prepared(root)] == ["stdlib-v300"]
    assert load_prepared("stdlib", 300, root=root).manifest.digest == other.manifest.digest


def test_tampered_shard_is_refused(stdlib_slice: Prepared, tmp_path: Path) -> None:
    d = tmp_path / "copy"
    shutil.copytree(stdlib_slice.directory, d)
    verify(d)  # leaves the stamp cache
    verify(d)
    shard = d / stdlib_slice.manifest.splits["train"][0].file
    data = bytearray(shard.read_bytes())
    data[1001] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="checksum"):
        verify(d, use_cache=False)
    with pytest.raises(DataError, match="checksum"):
        verify(d)  # with the cache: size is unchanged but mtime moved, so it is hashed again


def test_progress_is_reported(tmp_path: Path) -> None:
    rec = RecordingProgress()
    prepare("stdlib", 300, root=tmp_path, max_bytes=200_000, progress=rec)
    names = [t.description for t in rec.tasks]
    assert any("tokenizer" in n for n in names) and "tokenize" in names
    assert all(t.closed for t in rec.tasks)
    tok = next(t for t in rec.tasks if t.description == "tokenize")
    assert tok.done == tok.total
    assert rec.messages and "Prepared stdlib" in rec.messages[-1]


# -- the tokenizer and byte counts -------------------------------------------------------------------------

UNICODE_TEXT = (
    "Café crème, naïve façade, Ærøskøbing, señor. "
    "東京都の天気は晴れです。北京欢迎你！ "
    "Emoji: 🎉🚀👩‍👩‍👧‍👦 and 🇫🇷 flags. "
    "Ελληνικά и русский текст. "
    "Math: ∑∫√∞ ≠ ≤. "
)


def test_non_ascii_byte_counts_are_exact(tmp_path: Path) -> None:
    path = tmp_path / "unicode.txt"
    text = "\n\n".join(f"{i}: {UNICODE_TEXT * (1 + i % 3)}" for i in range(80)) + "\n"
    path.write_text(text, encoding="utf-8")
    for vocab in (256, 400):
        prep = prepare(path, vocab, root=tmp_path / "data")
        enc = load_tokenizer(prep.directory / "tokenizer.json")
        tb = load_token_bytes(prep.directory)
        assert tb.tolist() == token_byte_lengths(enc).tolist()
        partial = [i for i in range(enc.n_vocab - 1) if not _is_utf8(enc.decode_single_token_bytes(i))]
        assert partial, "some tokens are incomplete UTF-8 sequences"
        naive_wrong = False
        for split in SPLITS:
            for ids in split_docs(prep.directory, prep.manifest, split):
                doc = decode_doc(enc, ids)
                assert int(tb[ids].sum()) == len(doc.encode("utf-8"))
                naive = sum(len(enc.decode([int(t)]).encode("utf-8")) for t in ids)  # the upstream bug
                naive_wrong |= naive != len(doc.encode("utf-8"))
        assert naive_wrong, "the test data exercises tokens that are partial UTF-8 sequences"
        assert_roundtrip(prep, path)


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_byte_level_vocab_256(tmp_path: Path) -> None:
    prep = prepare("stdlib", 256, root=tmp_path, max_bytes=150_000)
    m = prep.manifest
    assert prep.directory.name == "stdlib-v256"
    assert m.vocab_size == 257 and m.bos_id == 256
    for split in SPLITS:
        st = m.stats["splits"][split]
        assert st["tokens"] == st["bytes"] + st["documents"]  # one token per byte, plus BOS
        assert st["bytes_per_token"] == 1.0
    assert_roundtrip(prep, "stdlib", 150_000)


def test_tokenizer_layout_and_encode_docs() -> None:
    enc = byte_level_encoding()
    assert enc.n_vocab == 257 and enc.encode_single_token(BOS) == 256
    docs = ["héllo", f"literal {BOS} stays text", ""]
    arrays = encode_docs(enc, docs)
    assert [a[0] for a in arrays] == [256, 256, 256]
    assert [decode_doc(enc, a) for a in arrays] == docs
    assert 256 not in arrays[1][1:]


def test_vocab_too_large_for_the_text(tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt"
    path.write_text("one two three\n\nfour five six\n\nseven eight nine\n\nten\n")
    with pytest.raises(DataError, match="smaller --vocab"):
        prepare(path, 4096, root=tmp_path / "data")
    with pytest.raises(DataError, match="at least 256"):
        prepare(path, 100, root=tmp_path / "data")


# -- local inputs ------------------------------------------------------------------------------------------


def test_local_txt_paragraphs(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    write_story_text(path, 120)
    prep = prepare(path, 300, root=tmp_path / "data")
    assert prep.manifest.dataset == "local:notes"
    assert prep.directory.name.startswith("local-notes-") and prep.directory.name.endswith("-v300")
    assert prep.directory == dataset_dir(str(path), 300, tmp_path / "data")
    files = prep.manifest.source["files"]
    assert files[0]["file"] == "notes.txt" and len(files[0]["sha256"]) == 64
    assert_roundtrip(prep, path)


def test_local_txt_with_endoftext(tmp_path: Path) -> None:
    path = tmp_path / "stories.txt"
    stories = [f"Story {i}: once upon a time a cat named Tom{i} found a red ball." for i in range(50)]
    path.write_text(f"\n{EOT}\n".join(stories) + f"\n{EOT}\n")
    prep = prepare(path, 280, root=tmp_path / "data")
    total = sum(prep.manifest.stats["splits"][s]["documents"] for s in SPLITS)
    assert total == 50
    expected = expected_docs(path)
    assert sorted(sum(expected.values(), [])) == sorted(stories)
    assert_roundtrip(prep, path)


def test_read_txt_streams_big_files_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import autoresearch.harness.sources as sources

    monkeypatch.setattr(sources, "_READ_CHARS", 1000)  # many streamed blocks for a small file
    monkeypatch.setattr(sources, "_EOT_SNIFF_CHARS", 1000)
    path = tmp_path / "big.txt"
    text = write_story_text(path, 200)
    docs = list(read_txt(path, 700))
    assert "".join(docs) == text and all(len(d) <= 700 for d in docs)
    eot = tmp_path / "eot.txt"
    stories = [f"story number {i} " * (i % 40 + 1) for i in range(300)]
    eot.write_text(EOT.join(stories))
    assert list(read_txt(eot)) == [s.strip() for s in stories]


def test_chunk_text() -> None:
    code = "".join(f"def f{i}():\n    x = {i}\n\n    return x\n\n\n" for i in range(500))
    chunks = chunk_text(code, 300)
    assert "".join(chunks) == code and all(len(c) <= 300 for c in chunks)
    assert all(c.startswith("def ") for c in chunks), "cuts only at top-level boundaries"
    one_line = "x" * 1000
    assert chunk_text(one_line, 300) == ["x" * 300] * 3 + ["x" * 100]
    prose = "word " * 50 + "\n\n   indented paragraph\n\n" + "more " * 50
    parts = chunk_text(prose, 300, PARAGRAPH_BOUNDARY)
    assert parts == [prose[:275], prose[275:]] and parts[0].endswith("indented paragraph\n\n")


def test_local_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    records = [{"text": f"record {i}: émigré ☃ " + "abc " * (i % 17), "id": i} for i in range(60)]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    prep = prepare(path, 300, root=tmp_path / "data")
    assert sum(prep.manifest.stats["splits"][s]["documents"] for s in SPLITS) == 60
    assert_roundtrip(prep, path)


def test_local_parquet_by_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    texts = [f"row {i}: the parquet file says hello number {i} " * (1 + i % 5) for i in range(200)]
    pq.write_table(pa.table({"text": texts, "n": list(range(200))}), path, row_group_size=32)
    assert pq.ParquetFile(path).num_row_groups > 1
    prep = prepare(path, 300, root=tmp_path / "data")
    assert sum(prep.manifest.stats["splits"][s]["documents"] for s in SPLITS) == 200
    assert_roundtrip(prep, path)


def test_local_folder(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    for i in range(8):
        write_story_text(folder / f"part{i}.txt", 10 + i)
    (folder / "sub" / "more.jsonl").write_text("\n".join(json.dumps({"text": f"line {i} of more"}) for i in range(20)))
    pq.write_table(pa.table({"text": [f"pq {i} text" for i in range(20)]}), folder / "sub" / "t.parquet")
    (folder / "README.md").write_text("ignored")
    (folder / ".hidden" / "secret.txt").write_text("must not be read")
    prep = prepare(folder, 300, root=tmp_path / "data")
    m = prep.manifest
    assert m.dataset == "local:corpus"
    expected_files = [*(f"part{i}.txt" for i in range(8)), "sub/more.jsonl", "sub/t.parquet"]
    assert [f["file"] for f in m.source["files"]] == expected_files
    assert m.source["split"]["units_split_by_document"] == 0  # 10 files: whole files per split
    assert m.source["split"]["val_units"] >= 1 and m.source["split"]["test_units"] >= 1
    assert_roundtrip(prep, folder)


def test_tinyshakespeare(tmp_path: Path) -> None:
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} is absent")
    prep = prepare(SHAKESPEARE, 512, root=tmp_path)
    m = prep.manifest
    assert m.dataset == "local:tinyshakespeare"
    assert all(m.stats["splits"][s]["documents"] > 0 for s in SPLITS)
    assert 2.0 < m.stats["unigram_bpb"] < 8.0
    assert_roundtrip(prep, SHAKESPEARE)
    verify(prep.directory, use_cache=False)


# -- errors ------------------------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        prepare(path, 300, root=tmp_path / "data")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n   \n")
    with pytest.raises(DataError, match="no text"):
        prepare(blank, 300, root=tmp_path / "data")
    with pytest.raises(DataError, match="no text"):
        prepare(blank, 256, root=tmp_path / "data")
    two = tmp_path / "two.txt"
    two.write_text("first paragraph\n\nsecond paragraph\n")
    with pytest.raises(DataError, match="too little text"):
        prepare(two, 256, root=tmp_path / "data")
    assert list_prepared(tmp_path / "data") == []


def test_binary_and_non_utf8_files(tmp_path: Path) -> None:
    binary = tmp_path / "model.txt"
    binary.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(DataError, match="binary") as e:
        prepare(binary, 300, root=tmp_path / "data")
    assert "model.txt" in str(e.value)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(("caf\xe9 na\xefve " * 50).encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8") as e:
        prepare(latin, 300, root=tmp_path / "data")
    assert "iconv" in str(e.value)
    late = tmp_path / "late.txt"  # bad bytes far from the start: found while streaming, inside rustbpe's reader
    late.write_bytes(b"hello world\n\n" * 2000 + b"\xff\xfe bad" + b"\n\nmore text\n" * 10)
    with pytest.raises(DataError, match="late.txt is not UTF-8"):
        prepare(late, 300, root=tmp_path / "data")
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match="not UTF-8 text .* at line 2"):
        prepare(bad_line, 300, root=tmp_path / "data")
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet")
    with pytest.raises(DataError, match="Parquet"):
        prepare(fake, 300, root=tmp_path / "data")


def test_folder_without_supported_files(tmp_path: Path) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG")
    (folder / "b.csv").write_text("x,y\n")
    with pytest.raises(DataError, match=r"no \.txt, \.jsonl or \.parquet files") as e:
        prepare(folder, 300, root=tmp_path / "data")
    assert "2 other file" in str(e.value)


def test_bad_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n{"content": "no text field"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl line 2 has no \"text\" field"):
        prepare(path, 300, root=tmp_path / "data")
    path.write_text('{"text": "fine"}\n{broken json\n')
    with pytest.raises(DataError, match=r"bad\.jsonl line 2 is not valid JSON"):
        prepare(path, 300, root=tmp_path / "data")


def test_parquet_without_text_column(tmp_path: Path) -> None:
    path = tmp_path / "cols.parquet"
    pq.write_table(pa.table({"body": ["a", "b", "c"]}), path)
    with pytest.raises(DataError, match=r'no "text" column \(columns: body\)'):
        prepare(path, 300, root=tmp_path / "data")


def test_unknown_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        prepare("no-such-dataset", 300, root=tmp_path)
    msg = str(e.value)
    assert "no-such-dataset" in msg and "local path" in msg
    assert all(name in msg for name in DATASETS)


def test_load_prepared_missing_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_prepared("stdlib", 1024, root=tmp_path)
    assert "autoresearch prepare --dataset stdlib --vocab 1024" in str(e.value)


# -- atomicity ---------------------------------------------------------------------------------------------


class _Interrupt(Exception):
    pass


class _DiesWhileTokenizing(RecordingProgress):
    def task(self, description: str, total: float | None = None, unit: str = "it", initial: float = 0):  # type: ignore[override]
        if description == "tokenize":
            raise _Interrupt
        return super().task(description, total, unit, initial)


def test_interrupted_prepare_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    with pytest.raises(_Interrupt):
        prepare("stdlib", 300, root=tmp_path, max_bytes=200_000, progress=_DiesWhileTokenizing())
    assert list(tmp_path.iterdir()) == []
    # A build directory left by a killed process (pid that no longer exists) is swept by the next prepare.
    stale = tmp_path / f".stdlib-v300.tmp-{_dead_pid()}-1"
    stale.mkdir()
    (stale / "train_0000.bin").write_bytes(b"\0\0")
    prep = prepare("stdlib", 300, root=tmp_path, max_bytes=200_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stdlib-v300"]
    verify(prep.directory, use_cache=False)


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


# -- slow: the whole standard library -----------------------------------------------------------------------


@pytest.mark.slow
def test_full_stdlib(tmp_path: Path) -> None:
    prep = prepare("stdlib", 2048, root=tmp_path)
    m = prep.manifest
    assert m.vocab_size == 2048 and m.bos_id == 2047
    assert m.source["files"] > 500 and m.source["skipped_not_utf8"] == len(m.source["skipped_files"])
    assert m.split_tokens("train") > 1_000_000 and m.split_tokens("val") > 10_000 and m.split_tokens("test") > 10_000
    assert 2.0 < m.stats["unigram_bpb"] < 8.0 and 2.0 < m.stats["bytes_per_token"] < 6.0
    assert_roundtrip(prep, "stdlib")
    verify(prep.directory, use_cache=False)
