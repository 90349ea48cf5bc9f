"""`autoresearch doctor`: what this machine is, what a run on it would use, and what is missing.

``diagnose()`` returns a plain dict (the ``--json`` output); ``format_report()`` renders it for people.
Every problem is a ``{"problem": ..., "fix": ...}`` entry so that nothing is reported without a remedy.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from . import config as config_mod
from .hardware import Hardware, Profile, ProfileError, detect, profile_for


def _problem(problem: str, fix: str) -> dict[str, str]:
    return {"problem": problem, "fix": fix}


def check_ollama(host: str, timeout: float = 3.0) -> dict[str, Any]:
    """Does an Ollama server answer at host, and which models does it have?"""
    import ollama

    out: dict[str, Any] = {"provider": "ollama", "host": host, "reachable": False, "models": [], "problems": []}
    try:
        listing = ollama.Client(host=host, timeout=timeout).list()
    except Exception as e:  # connection refused, timeout, HTTP error, garbage reply
        reason = "connection refused" if isinstance(e, ConnectionError) else (str(e).splitlines()[0] if str(e) else type(e).__name__)
        out["error"] = reason
        out["problems"].append(
            _problem(
                f"no Ollama server answers at {host} ({reason})",
                "start it with `ollama serve` (install from https://ollama.com/download), set OLLAMA_HOST or "
                "[llm] ollama_host in the config for a remote one",
            )
        )
        return out
    out["reachable"] = True
    out["models"] = [
        {"name": m.model, "size_gb": round((m.size or 0) / 1024**3, 2), "parameters": getattr(m.details, "parameter_size", None)}
        for m in listing.models
    ]
    if not out["models"]:
        out["problems"].append(
            _problem("Ollama answers but has no models", "pull a coder model, e.g. `ollama pull qwen2.5-coder:7b`")
        )
    return out


def check_datasets(data_dir: Path, wanted: tuple[str, int] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"data_dir": str(data_dir), "prepared": [], "problems": []}
    try:
        from .harness.prepare import list_prepared
    except ImportError as e:  # pragma: no cover - only when the package is broken
        out["problems"].append(_problem(f"the data harness failed to import ({e})", "reinstall autoresearch"))
        return out
    for directory, manifest in list_prepared(data_dir):
        out["prepared"].append(
            {
                "dataset": manifest.dataset,
                "vocab_size": manifest.vocab_size,
                "directory": str(directory),
                "tokens": {split: manifest.split_tokens(split) for split in manifest.splits},
                "digest": manifest.digest[:12],
            }
        )
    if wanted and not any((d["dataset"], d["vocab_size"]) == wanted for d in out["prepared"]):
        name, vocab = wanted
        out["problems"].append(
            _problem(
                f"the profile's dataset {name} (vocab {vocab}) is not prepared",
                f"run `autoresearch prepare --dataset {name} --vocab {vocab}`, or train on another with --dataset",
            )
        )
    elif not out["prepared"]:
        out["problems"].append(
            _problem(
                f"no prepared dataset under {data_dir}",
                "run `autoresearch prepare --dataset stdlib` (offline, a minute) or `autoresearch prepare` for the profile's default",
            )
        )
    return out


def diagnose(settings: config_mod.Settings | None = None, hw: Hardware | None = None, *, check_llm: bool = True) -> dict[str, Any]:
    settings = settings or config_mod.load()
    hw = hw or detect()
    problems: list[dict[str, str]] = [_problem(note, "") for note in hw.notes]
    # hardware notes already carry their fix after a colon: split for a uniform shape
    for p in problems:
        head, _, fix = p["problem"].partition(": ")
        p["problem"], p["fix"] = head, fix or "see above"
    profile: Profile | None = None
    try:
        profile = profile_for(hw, settings.profile_overrides)
    except ProfileError as e:
        problems.append(_problem(f"config [profile] is invalid: {e}", f"edit {settings.source}"))
        profile = profile_for(hw)
    report: dict[str, Any] = {
        "hardware": hw.to_dict(),
        "backend": {
            "name": profile.backend,
            "device": profile.device,
            "dtype": profile.dtype,
            "compile": profile.compile,
            "torch": hw.torch_version,
            "mlx": hw.mlx_version,
            "mps_available": hw.mps_available,
            "mlx_available": hw.mlx_available,
        },
        "profile": profile.to_dict(),
        "config": str(settings.source) if settings.source else None,
    }
    if check_llm:
        report["llm"] = check_ollama(settings.ollama_host)
        problems += report["llm"].pop("problems")
    else:
        report["llm"] = {"provider": "ollama", "host": settings.ollama_host, "checked": False}
    report["datasets"] = check_datasets(settings.data_dir, (profile.dataset, profile.vocab_size))
    problems += report["datasets"].pop("problems")
    report["sandbox"] = check_sandbox(settings.data_dir)
    problems += report["sandbox"].pop("problems")
    report["sleep"] = check_sleep()
    problems += report["sleep"].pop("problems")
    free = shutil.disk_usage(settings.data_dir if settings.data_dir.exists() else Path.home()).free / 1024**3
    report["disk_free_gb"] = round(free, 1)
    if free < 5:
        problems.append(_problem(f"only {free:.1f} GB free on the data disk", "free some space: a night of runs needs a few GB"))
    report["problems"] = problems
    return report


def check_sandbox(data_dir: Path) -> dict[str, Any]:
    """How the agent's code is confined here, and whether the prepared data is out of its reach."""
    from .harness.sandbox import availability
    from .training.trial import exposed_data

    avail = availability()
    out: dict[str, Any] = {"confined": avail.confined, "landlock_abi": avail.landlock_abi, "summary": avail.summary(),
                           "problems": []}
    if not avail.confined:
        out["problems"].append(_problem(
            f"the training is not confined ({avail.reason})",
            "the score is still computed in a process of its own, but the agent's code could read the validation "
            "data: run on Linux 5.13+ (Landlock), or in a VM or container"))
    root = exposed_data(str(data_dir))
    if root:
        out["problems"].append(_problem(f"the data directory {data_dir} is inside {root}, which the training may read",
                                        "move the prepared data elsewhere (AUTORESEARCH_CACHE or [paths] data_dir)"))
    return out


def check_sleep() -> dict[str, Any]:
    """Whether an engine here would hold the machine's sleep off while it runs (and how to do it by hand if not)."""
    from .engine.awake import _system, sleep_support

    support = sleep_support()
    out: dict[str, Any] = {**support.to_dict(), "problems": []}
    # a problem where machines sleep by themselves (a Mac, a Windows PC); on Linux without a working inhibitor it is
    # mostly a server or a container (no logind: nothing suspends it either), so the Sleep line says it, no more
    if not support.available and support.mechanism != "off" and _system() != "linux":
        out["problems"].append(_problem(
            f"an engine cannot keep this machine awake: {support.detail}",
            f"{support.hint}. A machine that never sleeps (a server, a container) can ignore this, or set "
            "AUTORESEARCH_NO_INHIBIT=1"))
    return out


def _fmt_tokens(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def format_report(r: dict[str, Any]) -> str:
    hw, prof, be = r["hardware"], r["profile"], r["backend"]
    lines = ["Hardware"]
    lines.append(f"  CPU      {hw['cpu_model']} ({hw['cpu_cores']} cores, {hw['cpu_threads']} threads), {hw['ram_gb']} GB RAM")
    if hw.get("cuda"):
        c = hw["cuda"]
        cap = ".".join(str(x) for x in c["capability"])
        lines.append(f"  GPU      {c['name']} x{c['count']}, {c['memory_gb']} GB, compute capability {cap}")
    elif hw.get("apple_chip"):
        lines.append(f"  Apple    {hw['apple_chip']}, {hw['ram_gb']} GB unified memory")
    else:
        lines.append("  GPU      none usable")
    lines.append(f"  MPS      {'available' if hw['mps_available'] else 'no'}    MLX {hw['mlx_version'] or 'not installed'}    torch {hw['torch_version'] or 'not installed'}")
    lines.append("")
    lines.append(f"Backend    {be['name']} on {be['device']}, {be['dtype']}{', compiled' if be['compile'] else ''}")
    lines.append(f"Profile    {prof['name']}   because {prof['reason']}")
    peak = f"{prof['peak_flops'] / 1e12:.0f} TFLOP/s bf16 peak" if prof.get("peak_flops") else "no known peak (MFU not reported)"
    lines.append(
        f"           budget {prof['time_budget']} s, seq {prof['seq_len']}, depth {prof['depth']}, width {prof['width']}, "
        f"batch {prof['device_batch_size']} x {prof['seq_len']} (total {_fmt_tokens(prof['total_batch_size'])} tokens/step)"
    )
    lines.append(f"           vocab {prof['vocab_size']}, eval {_fmt_tokens(prof['eval_tokens'])} tokens, dataset {prof['dataset']}, {peak}")
    lines.append("")
    llm = r["llm"]
    if llm.get("checked") is False:
        lines.append(f"LLM        ollama at {llm['host']} (not checked)")
    elif llm["reachable"]:
        names = ", ".join(m["name"] for m in llm["models"]) or "no models"
        lines.append(f"LLM        ollama at {llm['host']}: {names}")
    else:
        lines.append(f"LLM        ollama at {llm['host']}: not reachable")
    ds = r["datasets"]
    lines.append(f"Datasets   {ds['data_dir']}")
    for d in ds["prepared"]:
        toks = ", ".join(f"{k} {_fmt_tokens(v)}" for k, v in d["tokens"].items())
        lines.append(f"           {d['dataset']} (vocab {d['vocab_size']}): {toks}  [{d['digest']}]")
    if not ds["prepared"]:
        lines.append("           none prepared")
    if "sandbox" in r:
        lines.append(f"Sandbox    {r['sandbox']['summary']}")
    if "sleep" in r:
        lines.append(f"Sleep      {r['sleep']['summary']}")
    lines.append(f"Disk       {r['disk_free_gb']} GB free")
    if r["config"]:
        lines.append(f"Config     {r['config']}")
    lines.append("")
    if r["problems"]:
        lines.append(f"{len(r['problems'])} problem(s):")
        for p in r["problems"]:
            lines.append(f"  ✗ {p['problem']}")
            lines.append(f"    → {p['fix']}")
    else:
        lines.append("✓ no problems found")
    return "\n".join(lines)
