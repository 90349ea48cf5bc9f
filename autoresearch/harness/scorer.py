"""The scorer: a fresh, trusted process that turns handed-back weights into val_bpb (and test_bpb).

``python -m autoresearch.harness.scorer`` reads a job (JSON) on stdin and writes one result (JSON) on stdout.
It holds the evaluation data; the model is the agent's code, so it runs in *serving* processes (the train
script again, confined, ``AUTORESEARCH_ROLE=serve``) that receive input rows and return logits, and never see
a target. The cross entropy, bits per byte and every check are computed here.

Causality is verified on the evaluation's own rows, unannounced: the scorer draws, from a secret (not the
run's seed), some rows and a cut position in each; the row's *twin* is the same row up to the cut and other
real text after it. Rows are shuffled into two streams served by two separate processes, each row of a pair
in a different process, so no process sees both (a model that memoised prefixes would have to share memory
across processes; the serving processes may write nothing). A causal model gives the same logits up to the
cut for a row and its twin; any difference beyond rounding makes the result invalid.
"""

from __future__ import annotations

import json
import queue
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bpb import bits_per_byte, open_eval
from .causality import CausalityJudge
from .sandbox import kill_tree
from .wire import WireError, pair

PROBES = 8  # twin pairs per evaluation, at least (see probe_count)
MAX_WIRE_BYTES = 1 << 34


@dataclass
class Item:
    split: str  # val | test | twin
    row: np.ndarray  # T+1 tokens (inputs = row[:-1], targets = row[1:])
    probe: int = -1  # index of its probe pair, -1 if none
    cut: int = -1
    idx: int = -1  # its row number in the split (the score sums rows in this order, whatever the streams' order)


@dataclass
class Stream:
    items: list[Item] = field(default_factory=list)


def _rows(data_dir: str, split: str, seq_len: int, tokens: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    plan = open_eval(data_dir, split, seq_len=seq_len, eval_tokens=tokens, batch_size=batch)
    rows = np.concatenate(list(plan.row_batches(max(1, batch))), axis=0) if plan.rows else np.zeros((0, seq_len + 1), np.int32)
    return rows.astype(np.int32), plan.token_bytes


def _extra_rows(data_dir: str, split: str, seq_len: int, skip: int, n: int) -> np.ndarray:
    """``n`` rows of ``split`` after its first ``skip`` (text the evaluation does not score), or fewer."""
    from .loader import TokenBatches

    loader = TokenBatches(data_dir, split, 1, seq_len, shuffle=False, epochs=1)
    out = []
    try:
        if skip:
            loader.next_rows(skip)
        for _ in range(n):
            out.append(loader.next_rows(1)[0])
    except (StopIteration, Exception):  # the split ends: fewer rows
        pass
    return np.array(out, dtype=np.int32).reshape(len(out), seq_len + 1)


def plan_streams(rows: dict[str, np.ndarray], suffixes: np.ndarray, rng: np.random.Generator,
                 probes: int = PROBES) -> tuple[Stream, Stream, list[tuple[int, int]]]:
    """Two streams of rows and twin pairs (probe -> cut); every scored row in exactly one stream.

    ``rows``: the rows to score per split; the twins are made from the first split's rows.
    """
    a, b = Stream(), Stream()
    splits = [k for k, v in rows.items() if len(v)]
    cuts: list[tuple[int, int]] = []
    if not splits:
        return a, b, cuts
    first = rows[splits[0]]
    seq = first.shape[1] - 1
    n_probes = min(probes, len(first), len(suffixes)) if seq >= 3 else 0
    chosen = set(rng.choice(len(first), size=n_probes, replace=False).tolist()) if n_probes else set()
    probe_of: dict[int, int] = {}
    for k, r in enumerate(sorted(chosen)):
        probe_of[r] = k
        cuts.append((k, int(rng.integers(1, seq - 1))))
    for split in splits:
        for i, row in enumerate(rows[split]):
            side, other = (a, b) if rng.random() < 0.5 else (b, a)
            k = probe_of.get(i, -1) if split == splits[0] else -1
            if k >= 0:
                cut = cuts[k][1]
                side.items.append(Item(split, row, k, cut, i))
                twin = np.concatenate([row[: cut + 1], suffixes[k][cut + 1:]]).astype(np.int32)
                other.items.append(Item("twin", twin, k, cut))
            else:
                side.items.append(Item(split, row, idx=i))
    rng.shuffle(a.items)
    rng.shuffle(b.items)
    return a, b, cuts


class Scores:
    """Cross entropies and bytes per row, and the logits before each probe's cut. On the CPU with numpy; on a GPU
    with torch, where the logits are. Rows are summed in their order in the split at the end, so the score does
    not depend on the (secret, random) order the streams served them in."""

    def __init__(self, token_bytes: dict[str, np.ndarray], vocab: int, device: str) -> None:
        self.vocab = vocab
        self.use_torch = device != "cpu"
        self.token_bytes = {k: v.astype(np.int64) for k, v in token_bytes.items()}
        if self.use_torch:
            import torch

            self.device = torch.device(device)
            self.token_bytes_t = {k: torch.from_numpy(v).to(self.device) for k, v in self.token_bytes.items()}
        self.rows: dict[str, dict[int, tuple[float, int]]] = {"val": {}, "test": {}}  # split -> row -> (nats, bytes)
        self.finite = True
        self.prefix: dict[tuple[int, str], np.ndarray] = {}  # (probe, "orig"|"twin") -> logits up to the cut (float32)
        self.low_precision = False

    def add(self, items: list[Item], logits: Any) -> None:
        """``logits``: (B, T, V), a float32 numpy array (CPU) or a torch tensor on the device."""
        for split in ("val", "test"):
            idx = [i for i, it in enumerate(items) if it.split == split]
            if not idx:
                continue
            targets = np.stack([items[i].row[1:] for i in idx]).astype(np.int64)
            part = logits if len(idx) == len(items) else logits[idx]
            if self.use_torch:
                nats, nbytes, finite = _torch_row_nats(part, targets, self.token_bytes_t[split], self.vocab)
            else:
                nats, nbytes, finite = _numpy_row_nats(part, targets, self.token_bytes[split])
            self.finite = self.finite and finite
            for j, i in enumerate(idx):
                self.rows[split][items[i].idx] = (float(nats[j]), int(nbytes[j]))
        for i, it in enumerate(items):
            if it.probe >= 0:
                part = logits[i, : it.cut + 1]
                part = part.float().cpu().numpy() if self.use_torch else np.array(part, dtype=np.float32)
                self.prefix[(it.probe, "twin" if it.split == "twin" else "orig")] = part

    def total(self, split: str) -> tuple[float, int]:
        """(nats, bytes) of a split, summed in row order (float64)."""
        rows = self.rows[split]
        order = sorted(rows)
        return float(np.sum(np.array([rows[r][0] for r in order], dtype=np.float64))), sum(rows[r][1] for r in order)


def _numpy_row_nats(logits: np.ndarray, targets: np.ndarray, token_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per row: the cross entropy (float32 math, float64 sums) over its counted targets, their bytes; all finite."""
    n, t, v = logits.shape
    flat = logits.reshape(-1, v)
    tgt = targets.reshape(-1)
    nbytes = token_bytes[tgt]
    if not np.isfinite(flat).all():
        return np.zeros(n), nbytes.reshape(n, t).sum(axis=1), False
    m = flat.max(axis=1, keepdims=True)
    lse = np.log(np.exp(flat - m).sum(axis=1, dtype=np.float64)) + m[:, 0]
    ce = np.where(nbytes > 0, lse - flat[np.arange(len(tgt)), tgt], 0.0).reshape(n, t)
    return ce.sum(axis=1, dtype=np.float64), nbytes.reshape(n, t).sum(axis=1), True


def _torch_row_nats(logits: Any, targets: np.ndarray, token_bytes: Any, vocab: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """The torch twin of :func:`_numpy_row_nats`, on the logits' device, in chunks of positions."""
    import torch
    import torch.nn.functional as F

    from .bpb import positions_per_chunk

    n, t = targets.shape
    flat = logits[..., :vocab].reshape(n * t, vocab)
    tgt = torch.from_numpy(targets.reshape(-1)).to(flat.device)
    nbytes = token_bytes[tgt]
    ce = torch.empty(n * t, dtype=torch.float32, device=flat.device)
    finite = torch.ones((), dtype=torch.bool, device=flat.device)
    step = positions_per_chunk(vocab)
    for i in range(0, n * t, step):
        chunk = flat[i : i + step].float()
        finite &= torch.isfinite(chunk).all()
        ce[i : i + step] = F.cross_entropy(chunk, tgt[i : i + step], reduction="none")
    ce = torch.where(nbytes > 0, ce, 0.0).view(n, t).double().sum(dim=1)
    return ce.cpu().numpy(), nbytes.view(n, t).sum(dim=1).cpu().numpy(), bool(finite.item())


_WIRE_SIZES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _logits(payload: bytearray, dtype: str, shape: list[int], scores: Scores) -> Any:
    """The logits of one reply: float32 numpy for the CPU, a torch tensor on the device otherwise."""
    if not scores.use_torch:
        if dtype == "float32":
            return np.frombuffer(payload, dtype=np.float32).reshape(shape)
        if dtype == "float16":
            return np.frombuffer(payload, dtype=np.float16).reshape(shape).astype(np.float32)
        bits = np.frombuffer(payload, dtype=np.uint16).astype(np.uint32) << 16  # bfloat16: the high half of a float32
        return bits.view(np.float32).reshape(shape)
    import torch

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    raw = torch.frombuffer(payload, dtype=torch.int16 if torch_dtype != torch.float32 else torch.float32)
    return (raw.view(torch_dtype) if torch_dtype != torch.float32 else raw).reshape(shape).to(scores.device)


class Server:
    """One serving process (the agent's script in the serving role), started early so that its start-up (imports,
    building the model, loading the weights) overlaps the scorer's own work and the other process's serving."""

    def __init__(self, job: dict[str, Any], which: str, log: Any) -> None:
        ours, theirs = pair()
        spec = job["serving"][which]
        env = dict(spec["env"], AUTORESEARCH_ROLE="serve", AUTORESEARCH_SERVE_FD=str(theirs.fileno()),
                   AUTORESEARCH_PASS_FDS=str(theirs.fileno()))
        self.which = which
        self.channel = ours
        self.proc = subprocess.Popen(spec["argv"], cwd=job["cwd"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, pass_fds=[theirs.fileno()], start_new_session=True)
        theirs.close()
        self.channel.settimeout(float(job.get("request_timeout", 600)))

    def serve(self, job: dict[str, Any], stream: Stream, scores: Scores, log: Any) -> dict[str, Any]:
        """Have it load the weights, send the stream's rows in batches, score what comes back.

        Pipelined: the next batch is asked for before the last one is scored, and a reader thread takes the
        replies as they come, so the model computes while the scorer scores (and neither side ever blocks the
        other on a full socket).
        """
        log.write(f"--- evaluation: serving process {self.which} ({len(stream.items)} rows)\n")
        log.flush()
        batch = max(1, int(job["batch_size"]))
        seq = int(job["seq_len"])
        vocab = int(job["vocab_size"])
        ours = self.channel
        batches = [stream.items[i : i + batch] for i in range(0, len(stream.items), batch)]
        replies: queue.Queue[tuple[dict[str, Any], bytearray] | BaseException] = queue.Queue()

        def read() -> None:
            for _ in range(len(batches) + 1):  # the load acknowledgement, then one reply per batch
                try:
                    replies.put(ours.recv())
                except BaseException as e:  # noqa: BLE001 - handed to the scoring thread
                    replies.put(e)
                    return

        reader = threading.Thread(target=read, daemon=True)
        error = ""
        try:
            ours.send({"op": "load"})
            reader.start()
            loaded = replies.get()
            if isinstance(loaded, BaseException) or not loaded[0].get("ok"):
                raise WireError(f"it did not load the weights ({loaded if isinstance(loaded, BaseException) else loaded[0]})")
            for i, items in enumerate(batches):
                if i == 0:
                    self._ask(items, seq)
                if i + 1 < len(batches):
                    self._ask(batches[i + 1], seq)
                got = replies.get()
                if isinstance(got, BaseException):
                    raise got
                reply, payload = got
                if not reply.get("ok"):
                    error = f"the model's output: {str(reply.get('error'))[:500]}"
                    break
                dtype = str(reply.get("dtype"))
                shape = reply.get("shape")
                expected = [len(items), seq, vocab]
                if dtype not in _WIRE_SIZES or shape != expected or len(payload) != int(np.prod(expected)) * _WIRE_SIZES[dtype]:
                    error = f"the serving process answered {shape} {reply.get('dtype')} ({len(payload)} bytes), not {expected} logits"
                    break
                if dtype != "float32":
                    scores.low_precision = True
                scores.add(items, _logits(payload, dtype, expected, scores))
            else:
                ours.send({"op": "close"})
        except (WireError, OSError) as e:
            error = f"the serving process stopped answering ({e})"
        finally:
            ours.close()
        code = self.wait()
        if not error and code not in (0, None):
            error = f"the serving process exited with status {code}"
        return {"process": self.which, "rows": len(stream.items), "returncode": code, "error": error}

    def _ask(self, items: list[Item], seq: int) -> None:
        inputs = np.ascontiguousarray(np.stack([it.row[:-1] for it in items]), dtype=np.int32)
        self.channel.send({"op": "logits", "shape": [len(items), seq]}, inputs.tobytes())

    def wait(self) -> int:
        """Its exit status: given a moment to exit by itself (a torch process takes a second to tear down), then
        killed (every answer is in; a clean exit is not needed)."""
        try:
            return self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            kill_tree(self.proc.pid)  # the launcher and all below it (what the script started too)
            self.proc.wait()
            return 0

    def stop(self) -> None:
        self.channel.close()
        kill_tree(self.proc.pid)
        self.proc.wait()


def num_params(weights: Path) -> int:
    """Parameters in a safetensors file, from its header (no tensor is loaded, no code runs)."""
    with open(weights, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        count = 1
        for d in info.get("shape", []):
            count *= int(d)
        total += count
    return total


def score(job: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    seq, vocab, batch = int(job["seq_len"]), int(job["vocab_size"]), max(1, int(job["batch_size"]))
    data_dir = job["data_dir"]
    with open(job["log"], "a", encoding="utf-8", errors="replace") as log:
        servers = [Server(job, "A", log), Server(job, "B", log)]  # both start now; B gets ready while A serves
        try:
            splits = [sp for sp in job.get("splits", ["val", "test"]) if sp in ("val", "test")]
            tokens = {"val": int(job["eval_tokens"]), "test": int(job.get("test_tokens") or 0)}
            rows: dict[str, np.ndarray] = {}
            token_bytes: dict[str, np.ndarray] = {}
            for sp in splits:
                if tokens[sp] >= seq:
                    rows[sp], token_bytes[sp] = _rows(data_dir, sp, seq, tokens[sp], batch)
            rng = np.random.default_rng(secrets.randbits(128))  # secret: neither the run's seed nor anything on disk
            first = next(iter(rows), None)
            probes = probe_count(len(rows[first])) if first else 0
            suffixes = np.zeros((0, seq + 1), np.int32)
            for sp in ("val", "test"):  # other real text: what the evaluation does not score, after each split's rows
                if len(suffixes) < probes:
                    extra = _extra_rows(data_dir, sp, seq, len(rows.get(sp, ())) if sp in rows else tokens[sp] // seq,
                                        probes - len(suffixes))
                    suffixes = np.concatenate([suffixes, extra]) if len(extra) else suffixes
            a, b, cuts = plan_streams(rows, suffixes, rng, probes)
            scores = Scores(token_bytes, vocab, job.get("device", "cpu"))
            timing["data"] = time.perf_counter() - t0
            if job.get("wait_for_go") and sys.stdin.readline().strip() != "go":  # started early; the training failed
                return {"status": "crash", "reason": "the evaluation was called off"}
            timing["go"] = time.perf_counter() - t0
            processes = []
            for server, stream in zip(servers, (a, b)):
                info = server.serve(job, stream, scores, log)
                timing[server.which] = time.perf_counter() - t0
                processes.append(info)
                if info["error"]:
                    return {"status": "crash", "reason": info["error"], "processes": processes,
                            "eval_seconds": round(time.perf_counter() - t0, 3), "timing": timing}
        finally:
            for server in servers:
                server.stop()
    judge = CausalityJudge(None, scores.low_precision)
    for k, cut in cuts:
        base, twin = scores.prefix.get((k, "orig")), scores.prefix.get((k, "twin"))
        if base is None or twin is None:
            continue
        judge.add(cut, np.abs(twin - base).max(axis=-1), float(np.abs(base).max()))
    causal = judge.result()
    result: dict[str, Any] = {"processes": processes, "eval_seconds": round(time.perf_counter() - t0, 3),
                              "probes": len(cuts), "causality_max_diff": causal.max_diff if np.isfinite(causal.max_diff) else None,
                              "eval_tokens": int(len(rows.get("val", ())) * seq),
                              "test_tokens": int(len(rows.get("test", ())) * seq),
                              "timing": {k: round(v, 3) for k, v in timing.items()}}
    try:
        result["num_params"] = num_params(Path(job["weights"]))
    except (OSError, ValueError):
        result["num_params"] = None
    if not scores.finite:
        return {**result, "status": "nan", "reason": "the model's evaluation gave non-finite logits", "val_bpb": None}
    if not causal.ok:
        return {**result, "status": "invalid", "reason": causal.message, "val_bpb": None}
    for split in ("val", "test"):
        nats, nbytes = scores.total(split)
        result[f"{split}_bpb"] = bits_per_byte(nats, nbytes) if nbytes else None
    result["status"] = "ok"
    result["reason"] = ""
    return result


def probe_count(rows: int) -> int:
    """Twin pairs for an evaluation of ``rows`` rows: one per 16 rows, at least 8 and at most 64.

    Each pair tests one position (the one before its cut): a model that leaks the next token at a fraction r
    of the positions is caught with probability 1 - (1 - r) ** probes (r = 10%: 97% at 32 pairs).
    """
    return max(PROBES, min(64, rows // 16))


def main() -> int:
    job = json.loads(sys.stdin.readline())
    try:
        result = score(job)
    except Exception as e:  # the data, a bug: said in the result, the runner records it as a crash
        result = {"status": "crash", "reason": f"the scorer failed: {type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
