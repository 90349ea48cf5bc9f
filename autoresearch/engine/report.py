"""`autoresearch report`: the night of a run as a markdown report and a progress plot (optionally one HTML file).

Two sources:

- a run directory, read through the read model (:class:`~autoresearch.engine.view.RunView` over a read-only
  ledger, :func:`~autoresearch.engine.review.kept_changes`, :func:`~autoresearch.engine.diffs.experiment_diff`).
  Reading takes no lock an engine waits for and writes nothing but the report's own folder (by default
  ``RUN/.autoresearch/report/``, outside the run's git tree), so it works on a run whose engine is running;
  the report is then a snapshot and says so.
- a results.tsv alone (upstream autoresearch's 5 columns, or ours copied away from its run), read with
  :func:`~autoresearch.engine.status.tsv_status`. Such a file has no code, no timestamps and no noise
  estimate: the report says so where those figures would be.

:func:`build_report` gathers the figures into a :class:`Report`; :func:`format_markdown` writes it out;
:func:`write_report` writes report.md, progress.png (:mod:`~autoresearch.engine.plot`) and, on request,
report.html with the plot embedded.
"""

from __future__ import annotations

import base64
import html as html_mod
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..paths import STATE_DIR
from .earlystop import stopped_at
from .events import DECISION_STATUSES, FAILURE_STATUSES
from .experiments import Experiment
from .rundir import RunDir, RunError
from .view import RunState, RunView, experiment_status, parse_ts

REPORT_DIR = "report"  # inside the run's state directory
MARKDOWN, IMAGE, HTML = "report.md", "progress.png", "report.html"
DIFF_LINES = 300  # a kept change's diff is cut after this many lines (a whole-file rewrite can be huge)
CLEAR_SIGMAS = 2.0  # an improvement of at least this many sigmas is "clearly above the noise" (as the review says)
_CLIENT_EVENTS = {"review", "note_added", "note_removed"}  # written by clients, maybe in the morning: not engine time


@dataclass
class Row:
    """One experiment as the report shows it."""

    index: int
    status: str  # keep | discard | crash | ... | interrupted | running | confirming | interrupted?
    kind: str  # baseline | agent | revert
    val_bpb: float | None
    delta: float | None
    description: str
    commit: str = ""
    reason: str = ""
    reverted_by: int | None = None
    reverts: int | None = None


@dataclass
class KeptEntry:
    index: int
    description: str
    commit: str
    val_bpb: float | None
    delta: float | None
    sigmas: float | None  # the improvement in units of the noise (None without a noise estimate)
    test_bpb: float | None
    test_delta: float | None
    seeds: int | None
    verdict: str  # accept | reject | unreviewed | "n/a" (a results.tsv has no review)
    reverted_by: int | None
    diff: str  # unified diff of train.py against its parent ('' when there is none)
    diff_note: str = ""  # why there is no diff, or that it was cut


@dataclass
class FailureGroup:
    status: str
    cause: str
    indices: list[int]


@dataclass
class TimePart:
    label: str
    seconds: float
    recorded: bool = True  # False: nothing recorded this part (shown as such, not as 0)


@dataclass
class TimeSplit:
    total_seconds: float  # the engine's time: from the first to the last event of each of its sessions
    sessions: int
    parts: list[TimePart]
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    name: str
    source: str  # run | results.tsv
    path: Path  # the run directory or the results.tsv
    facts: list[tuple[str, str]]  # the title block: machine, profile, budget, data, agent, policy ...
    rows: list[Row]
    kept: list[KeptEntry]
    failures: list[FailureGroup]
    baseline: Row | None
    best: Row | None
    lowest: Row | None  # the lowest val_bpb among the kept (differs from best when a change was reverted)
    noise_sigma: float | None
    noise_dof: int = 0
    noise_source: str = ""
    started: float | None = None  # seconds since the epoch (a run only)
    ended: float | None = None
    timing: TimeSplit | None = None
    running: bool = False  # an engine runs the run now: this is a snapshot
    notes: list[str] = field(default_factory=list)  # what the source cannot tell

    @property
    def decided(self) -> list[Row]:
        return [r for r in self.rows if _decided(r.status)]

    @property
    def open(self) -> list[Row]:
        """Experiments without an outcome yet (running, confirming, or left open by a killed engine)."""
        return [r for r in self.rows if not _decided(r.status)]

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.status for r in self.decided)

    @property
    def gain(self) -> float | None:
        if self.best is None or self.baseline is None or self.best.val_bpb is None or self.baseline.val_bpb is None:
            return None
        return self.best.val_bpb - self.baseline.val_bpb

    @property
    def engine_hours(self) -> float | None:
        return self.timing.total_seconds / 3600 if self.timing and self.timing.total_seconds > 0 else None


def _decided(status: str) -> bool:
    return status in DECISION_STATUSES or status == "interrupted"


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    markdown: Path
    plot: Path  # progress.png
    html: Path | None = None


# ---------------------------------------------------------------------------------------------------------
# where the report comes from and goes to


def tsv_source(ref: str | None) -> Path | RunDir | None:
    """What a RUN argument names when it is a file: a results.tsv (a Path), or the run whose own results.tsv it
    is (a RunDir: its ledger says more). None when ``ref`` is a run reference (a tag, a run's path, nothing)."""
    if not ref:
        return None
    path = Path(ref).expanduser()
    if path.is_dir():
        return None
    if not path.exists():
        if ref.endswith(".tsv"):
            raise RunError(f"{ref}: no such file; give a results.tsv that exists, or a run (a tag or its directory)")
        return None
    state = path.resolve().parent
    if path.name == "results.tsv" and state.name == STATE_DIR and (state / "config.json").exists():
        return RunDir(state.parent)
    return path


def default_out(report: Report, cwd: Path | None = None) -> Path:
    """RUN/.autoresearch/report/ for a run; ./report-<name>/ in the working directory for a results.tsv."""
    if report.source == "run":
        return report.path / STATE_DIR / REPORT_DIR
    return (cwd or Path.cwd()) / f"report-{_safe_name(report.name)}"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "results"


def build_report(source: RunDir | Path) -> Report:
    """The report's figures, from a run directory or a results.tsv (errors: :class:`RunError`, for the user)."""
    if isinstance(source, RunDir):
        return _run_report(source)
    return _tsv_report(Path(source))


# ---------------------------------------------------------------------------------------------------------
# from a run directory


def _run_report(run: RunDir) -> Report:
    from .diffs import experiment_diff
    from .review import kept_changes

    view = RunView(run)
    st = view.poll().state
    if st.error:
        raise RunError(st.error)
    exps = view.experiments()
    rows = [_row(e, st) for e in exps]
    if not any(_decided(r.status) for r in rows):
        what = "the baseline is still being measured" if st.engine.alive else "the engine has not finished one"
        raise RunError(f"run {run.tag} has no experiments yet ({what}); make the report once the baseline is "
                       f"recorded (`autoresearch status {run.tag}` shows where it is)")
    cfg = st.config
    ledger = view.ledger
    noise = ledger.last("noise_estimate") or {}
    kept: list[KeptEntry] = []
    for c in kept_changes(ledger):
        d = experiment_diff(run, c.commit, c.parent)
        text, note = d.unified, ""
        if d.error:
            text, note = "", f"diff unavailable ({d.error})"
        elif c.parent is None:
            note = "no parent commit recorded: no diff"
        elif not text:
            note = "train.py did not change (the same script measured again)"
        else:
            lines = text.splitlines()
            if len(lines) > DIFF_LINES:
                text = "\n".join(lines[:DIFF_LINES])
                note = (f"cut after {DIFF_LINES} of {len(lines)} lines; the whole change: "
                        f"`git -C {run.path} diff {c.parent[:7]} {c.commit[:7]} -- train.py`")
        kept.append(KeptEntry(index=c.index, description=c.description, commit=c.commit[:7], val_bpb=c.val_bpb,
                              delta=c.delta, sigmas=c.confidence, test_bpb=c.test_bpb, test_delta=c.test_delta,
                              seeds=c.seeds, verdict=c.verdict, reverted_by=c.reverted_by, diff=text, diff_note=note))
    by_index = {r.index: r for r in rows}
    best = by_index.get(st.best.index) if st.best else None
    baseline = by_index.get(st.baseline.index) if st.baseline else None
    kept_rows = [r for r in rows if r.status == "keep" and r.val_bpb is not None]
    lowest = min(kept_rows, key=lambda r: r.val_bpb) if kept_rows else None  # type: ignore[arg-type,return-value]
    events = ledger.events()
    started, ended, sessions = _sessions(events)
    timing = _time_split(exps, events, sessions)
    prof = cfg.get("profile") or {}
    budget = prof.get("time_budget")
    facts = [
        ("Machine", str(cfg.get("hardware_summary") or "not recorded")),
        ("Profile", f"{prof.get('name') or '?'} ({cfg.get('backend') or '?'} on {prof.get('device') or '?'})"),
        ("Budget", f"{budget:.0f} s of training per experiment" if isinstance(budget, (int, float)) else "not recorded"),
        ("Data", str(cfg.get("dataset") or "not recorded")),
        ("Agent", str(cfg.get("agent") or "none (the baseline only)")),
        ("Policy", str(cfg.get("policy") or "not recorded")),
        ("Run directory", str(run.path)),
    ]
    notes = []
    if st.engine.alive:
        notes.append("The engine is still running this run: this report is a snapshot; make it again for the rest.")
    opened = [r for r in rows if not _decided(r.status)]
    if opened:
        notes.append(f"Experiment{'s' if len(opened) > 1 else ''} {', '.join(str(r.index) for r in opened)} "
                     f"{'have' if len(opened) > 1 else 'has'} no outcome yet ({', '.join(r.status for r in opened)}).")
    return Report(
        name=run.tag, source="run", path=run.path, facts=facts, rows=rows, kept=kept,
        failures=_failures(rows, from_tsv=False), baseline=baseline, best=best, lowest=lowest,
        noise_sigma=st.noise_sigma, noise_dof=st.noise_dof, noise_source=str(noise.get("source") or ""),
        started=started, ended=ended, timing=timing, running=st.engine.alive, notes=notes,
    )


def _row(e: Experiment, st: RunState) -> Row:
    return Row(index=e.index, status=experiment_status(e, st), kind=e.kind or "agent", val_bpb=e.val_bpb,
               delta=e.delta, description=e.description, commit=(e.commit or "")[:7], reason=e.reason,
               reverted_by=e.reverted_by, reverts=e.reverts)


def _sessions(events: list[dict[str, Any]]) -> tuple[float | None, float | None, list[tuple[float, float]]]:
    """(first, last, sessions): when the engine ran, as (start, end) of each of its sessions. A session runs from
    a run_started (or the ledger's first event) to its stopped, or to the last event before the next run_started
    (an engine killed without a word). What clients append while no engine runs (review marks, notes, a revert
    made in the morning) is not engine time. Only the boundaries' timestamps are parsed (a ledger can hold tens
    of thousands of events)."""
    sessions: list[tuple[float, float]] = []
    start_ts: str | None = None
    last_ts: str | None = None
    stopped = False

    def close() -> None:
        a, b = parse_ts(start_ts), parse_ts(last_ts)
        if a is not None and b is not None and b >= a:
            sessions.append((a, b))

    for raw in events:
        kind, ts = raw.get("event"), raw.get("ts")
        if kind in _CLIENT_EVENTS or not isinstance(ts, str):
            continue
        if kind == "run_started":
            if start_ts is not None and not stopped:
                close()
            start_ts, stopped = ts, False
        elif stopped:
            continue  # no engine: a client's events
        elif start_ts is None:
            start_ts = ts
        last_ts = ts
        if kind == "stopped":
            close()
            stopped = True
    if start_ts is not None and not stopped:
        close()
    return (sessions[0][0] if sessions else None), (sessions[-1][1] if sessions else None), sessions


def _time_split(exps: list[Experiment], events: list[dict[str, Any]], sessions: list[tuple[float, float]]) -> TimeSplit:
    """Where the engine's time went, from what was recorded: the harness's training and evaluation seconds of
    every training, the rest of each training process's wall time (start-up, compilation, data, crashed runs),
    and the agent's and the engine's seconds of each decision; what is left is idle time (pauses, waiting for the
    model, proposals that failed the checks) and what nothing recorded."""
    total = sum(b - a for a, b in sessions)
    train = evaluation = wall = 0.0
    n_train = n_eval = n_wall = n_all = n_scored = 0
    for e in exps:
        for t in (*e.superseded_trainings, *e.trainings):
            n_all += 1
            m = t.metrics or {}
            tr = m.get("training_seconds")
            ev = m.get("scoring_seconds", m.get("eval_seconds"))
            if isinstance(tr, (int, float)):
                train += tr
                n_train += 1
            if isinstance(ev, (int, float)):
                evaluation += ev
                n_eval += 1
            n_scored += t.outcome == "ok"  # (a failed or early-stopped training is not evaluated)
            if isinstance(t.wall_seconds, (int, float)):
                wall += t.wall_seconds
                n_wall += 1
    agent = engine = waited = 0.0
    n_timed = 0
    n_decided = 0
    agent_made = {e.index for e in exps if e.kind == "agent"}  # the baseline and reverts have no agent step
    for raw in events:
        if raw.get("event") != "decision":
            continue
        timing = raw.get("timing")
        n_decided += raw.get("index") in agent_made or isinstance(timing, dict)
        if isinstance(timing, dict):
            n_timed += 1
            a, g, w = timing.get("agent_seconds"), timing.get("engine_seconds"), timing.get("waited_seconds")
            agent += a if isinstance(a, (int, float)) else 0.0
            waited += w if isinstance(w, (int, float)) and w > 0 else 0.0
            engine += g if isinstance(g, (int, float)) and g > 0 else 0.0
    startup = max(0.0, wall - train - evaluation)
    parts = [TimePart("training (the harness's clock)", train, n_train > 0),
             TimePart("evaluation", evaluation, n_eval > 0),
             TimePart("agent (proposing, repairing)", agent, n_timed > 0),
             TimePart("overhead (start-up, compiling, crashed runs, the engine)", startup + engine, n_wall > 0 or n_timed > 0)]
    if waited > 0:  # a busy machine or a full disk, waited out inside experiments: the machine's time, not the engine's
        parts.append(TimePart("waiting for a quiet machine or disk space", waited))
    accounted = sum(p.seconds for p in parts)
    notes = []
    if accounted > total * 1.02 and total > 0:  # (a few seconds of overlap between the clocks is not worth a note)
        notes.append(f"the recorded parts add up to {_hours(accounted)}, more than the {_hours(total)} from the engine's "
                     "first to its last event: the shares are of the recorded parts")
    parts.append(TimePart("other (idle, paused, waiting for the model, not recorded)", max(0.0, total - accounted)))
    early = [t for e in exps for t in e.trainings if t.outcome == "early_stop"]
    if early:
        at: list[float] = []  # where each was stopped: its curve's last point (the budget's share, or the steps')
        saved = 0.0
        for t in early:
            curve = t.metrics.get("loss_curve") or []
            p = curve[-1][0] if curve and isinstance(curve[-1], (list, tuple)) and curve[-1] else None
            secs = t.metrics.get("training_seconds")
            if isinstance(p, (int, float)) and 0 < p < 1 and isinstance(secs, (int, float)):
                at.append(p)
                saved += secs / p - secs
        where = f", at {100 * sum(at) / len(at):.0f}% of the budget on average" if at else ""
        spared = _hours(saved) if saved >= 60 else f"{saved:.0f} s"
        notes.append(f"{len(early)} training(s) were stopped early as hopeless{where}: {spared} of training "
                     "(and their evaluations) not spent")
    if n_scored and n_eval < n_scored:
        notes.append("evaluation time is not recorded" + (f" for {n_scored - n_eval} of {n_scored} evaluated trainings"
                                                          if n_eval else "")
                     + " (a run recorded by an older version): it is counted under overhead")
    if n_all and n_wall < n_all:
        notes.append(f"{n_all - n_wall} of {n_all} trainings have no wall time recorded")
    if n_decided and n_timed < n_decided:
        what = ("the decisions carry no agent or engine times (a run recorded by an older version)" if not n_timed else
                f"{n_decided - n_timed} of {n_decided} decisions carry no agent or engine times")
        notes.append(f"{what}: that time is counted under other")
    return TimeSplit(total_seconds=total, sessions=len(sessions), parts=parts, notes=notes)


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _failures(rows: list[Row], from_tsv: bool) -> list[FailureGroup]:
    """Failures grouped by status and cause (numbers left out of the grouping key: 'step 412' and 'step 97' are
    one cause); the first one's words describe the group."""
    groups: dict[tuple[str, str], FailureGroup] = {}
    for r in rows:
        if r.status not in FAILURE_STATUSES:
            continue
        if from_tsv:  # no reasons in a results.tsv: one group per status, described by what its rows say
            group = groups.setdefault((r.status, ""), FailureGroup(r.status, "not recorded in a results.tsv", []))
            group.indices.append(r.index)
            said = [" ".join(x.description.split()) for x in rows if x.index in group.indices and x.description]
            if said:
                more = f"; and {len(said) - 3} more" if len(said) > 3 else ""
                group.cause = "not recorded in a results.tsv; the changes tried: " + "; ".join(_cause(d, 70) for d in said[:3]) + more
            continue
        cause = _cause(r.reason) if r.reason else "no reason recorded"
        key = (r.status, re.sub(r"\d+(?:\.\d+)?", "#", cause))
        group = groups.setdefault(key, FailureGroup(r.status, cause, []))
        group.indices.append(r.index)
    order = {s: i for i, s in enumerate(FAILURE_STATUSES)}
    return sorted(groups.values(), key=lambda g: (order.get(g.status, 99), -len(g.indices), g.indices[0]))


def _cause(reason: str, width: int = 110) -> str:
    text = " ".join(reason.split())
    m = re.search(r"\b([A-Z]\w*(?:Error|Exception|Interrupt|Warning))\b:?\s*(.*)", text)  # a Python exception
    if m:
        text = f"{m.group(1)}: {m.group(2)}".rstrip(": ")
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


# ---------------------------------------------------------------------------------------------------------
# from a results.tsv alone


def _tsv_report(path: Path) -> Report:
    from .status import tsv_status

    if path.is_dir():
        raise RunError(f"{path} is a directory, not a results.tsv (for a run, give its tag or its directory)")
    try:
        status = tsv_status(path)
    except (UnicodeDecodeError, ValueError) as e:
        raise RunError(f"{path} is not a results table ({type(e).__name__}); give a results.tsv with the columns "
                       "commit, val_bpb, memory_gb, status, description") from None
    except OSError as e:
        raise RunError(f"cannot read {path}: {e.strerror or e}") from None
    known = set(DECISION_STATUSES) | {"interrupted"}
    exps = status["experiments"]
    if not any(x["status"] in known for x in exps):
        raise RunError(f"{path} is not a results table: no row has a status such as keep, discard or crash (expected "
                       "tab-separated columns commit, val_bpb, memory_gb, status, description)")
    rows = []
    for x in exps:
        kind = "baseline" if x is exps[0] and x["status"] == "keep" else "agent"
        rows.append(Row(index=x["index"], status=x["status"] or "?", kind=kind, val_bpb=x["val_bpb"], delta=x["delta"],
                        description=x["description"], commit=x["commit"]))
    by_index = {r.index: r for r in rows}
    baseline = rows[0] if rows[0].kind == "baseline" else None
    best = by_index.get(status["best"]["index"]) if status["best"] else None
    kept_rows = [r for r in rows if r.status == "keep" and r.val_bpb is not None]
    lowest = min(kept_rows, key=lambda r: r.val_bpb) if kept_rows else None  # type: ignore[arg-type,return-value]
    kept = []
    for x, r in zip(exps, rows):
        if r.status != "keep" or r.kind == "baseline":
            continue
        where = f"`git show {r.commit}` in the repository that ran it" if r.commit else "no commit recorded"
        kept.append(KeptEntry(index=r.index, description=r.description, commit=r.commit, val_bpb=r.val_bpb,
                              delta=r.delta, sigmas=None, test_bpb=x.get("test_bpb"), test_delta=None,
                              seeds=x.get("seeds"), verdict="n/a", reverted_by=None, diff="",
                              diff_note=f"no diff: a results.tsv holds no code ({where})"))
    secs = [(x.get("training_seconds"), x.get("seeds") or 1) for x in exps]
    train = sum(s * n for s, n in secs if isinstance(s, (int, float)))
    timing = None
    notes = ["Read from a results.tsv alone: no run directory, so no diffs of train.py, no timestamps (no dates, "
             "pace or time split), no noise estimate, no review verdicts and no failure reasons."]
    if train > 0:
        timing = TimeSplit(total_seconds=0.0, sessions=0, parts=[TimePart("training (the training_seconds column)", train)],
                           notes=["a results.tsv records training seconds only: no evaluation, agent or overhead "
                                  "times, and no timestamps (so no experiments per hour)"])
    return Report(
        name=str(status["run"]), source="results.tsv", path=path.resolve(),
        facts=[("Source", f"{path} (a results.tsv alone)"),
               ("Machine, profile, budget, agent, policy", "not recorded in a results.tsv")],
        rows=rows, kept=kept, failures=_failures(rows, from_tsv=True), baseline=baseline, best=best, lowest=lowest,
        noise_sigma=None, timing=timing, notes=notes,
    )


# ---------------------------------------------------------------------------------------------------------
# markdown


def _num(v: float | None, fmt: str = ".6f") -> str:
    return format(v, fmt) if v is not None else "-"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def _date(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M")


def span_text(r: Report) -> str:
    if r.started is None or r.ended is None:
        return "dates not recorded (a results.tsv has no timestamps)" if r.source == "results.tsv" else "dates not recorded"
    end = _date(r.ended)
    if end[:10] == _date(r.started)[:10]:
        end = end[11:]
    return f"{_date(r.started)} – {end} UTC ({_hours(r.ended - r.started)})"


def plot_title(r: Report) -> str:
    n = len(r.decided)
    k = len(r.kept)
    return f"autoresearch progress: {n} experiments, {k} kept improvement{'' if k == 1 else 's'} ({r.name})"


def summary_line(r: Report) -> str:
    """One line for the terminal."""
    parts = [f"{len(r.decided)} experiments", f"{len(r.kept)} kept improvements"]
    if r.best is not None and r.best.val_bpb is not None:
        gain = f" ({r.gain:+.6f} vs the baseline's {r.baseline.val_bpb:.6f})" if r.gain is not None and r.baseline else ""
        parts.append(f"best val_bpb {r.best.val_bpb:.6f}{gain}")
    failures = sum(len(g.indices) for g in r.failures)
    parts.append(f"{failures} failure{'' if failures == 1 else 's'}")
    return f"{r.name}: " + ", ".join(parts) + (" (engine still running: a snapshot)" if r.running else "")


def format_markdown(r: Report, image: str = IMAGE) -> str:
    out: list[str] = [f"# autoresearch report: {r.name}", "", span_text(r), ""]
    out += ["| | |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in r.facts] + [""]
    out += [f"> {n}" for n in r.notes] + ([""] if r.notes else [])
    out += ["## Summary", ""] + _summary(r) + [""]
    if r.timing is not None:
        out += _timing(r.timing) + [""]
    out += ["## Progress", "", f"![progress]({image})", ""]
    out += ["## Results", "", "| # | status | val_bpb | delta | description |", "|---:|---|---:|---:|---|"]
    for row in r.rows:
        status = row.status
        if row.reverted_by is not None:
            status += f" (reverted by {row.reverted_by})"
        if row.kind == "baseline":
            status += " (baseline)"
        elif row.kind == "revert" and row.reverts is not None:
            status += f" (revert of {row.reverts})"
        share = stopped_at(row.reason) if row.val_bpb is None and row.status == "discard" else None
        value = f"stopped at {share}" if share else _num(row.val_bpb)  # no score: stopped part-way as hopeless
        out.append(f"| {row.index} | {status} | {value} | {_num(row.delta, '+.6f')} | {_cell(row.description)} |")
    out += ["", "## Kept changes", ""]
    if not r.kept:
        out += ["None yet: no change beat the baseline" + (" clearly enough to be kept." if r.source == "run" else "."), ""]
    for n, k in enumerate(r.kept, 1):
        out += _kept(n, k)
    out += ["## Failures", ""]
    if not r.failures:
        out += ["None: every experiment trained and was measured.", ""]
    else:
        out += ["| status | cause | count | experiments |", "|---|---|---:|---|"]
        for g in r.failures:
            out.append(f"| {g.status} | {_cell(g.cause)} | {len(g.indices)} | {', '.join(map(str, g.indices))} |")
        out.append("")
    return "\n".join(out)


def _summary(r: Report) -> list[str]:
    counts = r.counts
    n = len(r.decided)
    failures = {s: c for s, c in counts.items() if s in FAILURE_STATUSES}
    keeps = counts.get("keep", 0)
    reverts = sum(1 for row in r.rows if row.kind == "revert" and row.status == "keep")
    reverted = sum(1 for k in r.kept if k.reverted_by is not None)
    kept_words = [f"the baseline and {len(r.kept)} improvement{'' if len(r.kept) == 1 else 's'}" if r.baseline
                  else f"{len(r.kept)} improvement{'' if len(r.kept) == 1 else 's'}"]
    if reverts:
        kept_words.append(f"{reverts} revert{'' if reverts == 1 else 's'}")
    if reverted:
        kept_words.append(f"{reverted} of the improvements reverted later")
    lines = [f"- **Experiments:** {n}" + (f" decided, {len(r.open)} still open" if r.open else ""),
             f"- **Kept:** {keeps} ({', '.join(kept_words)})",
             f"- **Discarded:** {counts.get('discard', 0)}",
             f"- **Failures:** {sum(failures.values())}"
             + (f" ({', '.join(f'{c} {s}' for s, c in sorted(failures.items(), key=lambda x: -x[1]))})" if failures else "")]
    base = r.baseline.val_bpb if r.baseline else None
    lines.append(f"- **Baseline val_bpb:** {_num(base)}" if base is not None else
                 "- **Baseline val_bpb:** not recorded (the first row is not a kept baseline)")
    if r.best is not None and r.best.val_bpb is not None:
        text = f"- **Best val_bpb:** {r.best.val_bpb:.6f} (experiment {r.best.index}"
        text += f", {r.best.commit})" if r.best.commit else ")"
        if r.gain is not None and base:
            text += f": {r.gain:+.6f} vs the baseline ({100 * r.gain / base:+.2f} %)"
        lines.append(text)
        if r.lowest is not None and r.lowest.index != r.best.index and r.lowest.val_bpb is not None:
            lines.append(f"- **Lowest kept val_bpb:** {r.lowest.val_bpb:.6f} (experiment {r.lowest.index}, "
                         + ("reverted later: not the best now)" if r.lowest.reverted_by is not None else "not the best now)"))
    if r.noise_sigma is not None:
        judged = [k for k in r.kept if k.sigmas is not None]
        clear = sum(1 for k in judged if k.sigmas >= CLEAR_SIGMAS)  # type: ignore[operator]
        above = sum(1 for k in judged if k.sigmas >= 1)  # type: ignore[operator]
        dof = f", {r.noise_dof} degree{'' if r.noise_dof == 1 else 's'} of freedom" if r.noise_dof else ""
        src = f", from {r.noise_source}" if r.noise_source else ""
        lines.append(f"- **Noise floor:** σ = {r.noise_sigma:.6f} (seed-to-seed standard deviation of one training{dof}{src}); "
                     f"{clear} of {len(r.kept)} kept improvements are at least {CLEAR_SIGMAS:g}σ, {above} at least 1σ")
    elif r.source == "results.tsv":
        lines.append("- **Noise floor:** unknown: a results.tsv records no noise estimate, so nothing says which "
                     "kept improvements are larger than seed-to-seed noise")
    else:
        lines.append("- **Noise floor:** not estimated yet (the run has no repeated trainings of one script)")
    hours = r.engine_hours
    if hours:
        sessions = f" in {r.timing.sessions} sessions" if r.timing and r.timing.sessions > 1 else ""
        lines.append(f"- **Pace:** {n / hours:.1f} experiments per hour ({n} in {_hours(hours * 3600)} of engine time{sessions})")
    else:
        lines.append("- **Pace:** unknown (no timestamps" + (" in a results.tsv)" if r.source == "results.tsv" else ")"))
    return lines


def _timing(t: TimeSplit) -> list[str]:
    out = ["### Where the time went", ""]
    if t.total_seconds <= 0:
        out += [f"- {p.label}: {p.seconds / 3600:.2f} h" for p in t.parts]
        out += [f"- Note: {n}." for n in t.notes]
        return out
    base = max(t.total_seconds, sum(p.seconds for p in t.parts))
    hours = t.total_seconds >= 7200  # a short run (a demo, a first hour) in minutes
    unit, scale, digits = ("hours", 3600, 2) if hours else ("minutes", 60, 1)
    out += [f"| part | {unit} | share |", "|---|---:|---:|"]
    for p in t.parts:
        if not p.recorded:
            out.append(f"| {p.label} | not recorded | |")
        else:
            out.append(f"| {p.label} | {p.seconds / scale:.{digits}f} | {100 * p.seconds / base:.1f} % |")
    out.append(f"| **engine time** | **{t.total_seconds / scale:.{digits}f}** | |")
    out.append("")
    out += [f"- Note: {n}." for n in t.notes]
    return out


def _kept(n: int, k: KeptEntry) -> list[str]:
    title = f"### {n}. Experiment {k.index}: {' '.join(k.description.split())}"
    review = k.verdict if k.reverted_by is None else f"{k.verdict}, reverted by experiment {k.reverted_by}"
    test = _num(k.test_bpb)
    if k.test_delta is not None:
        test += f" ({k.test_delta:+.6f})"
    sig = f"{k.sigmas:.1f}σ" if k.sigmas is not None else "-"
    out = [title, "", "| commit | val_bpb | delta | σ multiple | test_bpb | seeds | review |",
           "|---|---:|---:|---:|---:|---:|---|",
           f"| {k.commit or '-'} | {_num(k.val_bpb)} | {_num(k.delta, '+.6f')} | {sig} | {test} | "
           f"{k.seeds if k.seeds is not None else '-'} | {review} |", ""]
    if k.diff:
        fence = "```"
        while fence in k.diff:
            fence += "`"
        out += [f"{fence}diff", k.diff, fence, ""]
    if k.diff_note:
        out += [f"_{k.diff_note}_", ""]
    return out


# ---------------------------------------------------------------------------------------------------------
# files


def plot_points(r: Report) -> list[Any]:
    from .plot import Point

    points = []
    for row in r.rows:
        if row.val_bpb is None or row.status not in ("keep", "discard"):
            continue  # failures without a val_bpb, open experiments: not plotted
        kept = row.status == "keep"
        label = "baseline" if row.kind == "baseline" else row.description
        points.append(Point(x=row.index, val_bpb=row.val_bpb, kept=kept, label=label if kept else "",
                            reverted=row.reverted_by is not None, revert=row.kind == "revert" and kept))
    return points


def write_report(source: Report | RunDir | Path, out: Path | None = None, *, html: bool = False) -> ReportFiles:
    """Write report.md and progress.png (and report.html) into ``out`` (default: :func:`default_out`).

    ``source``: a :class:`Report` already built, or what :func:`build_report` takes (a run directory, a
    results.tsv)."""
    from .plot import render_progress

    r = source if isinstance(source, Report) else build_report(source)
    directory = Path(out) if out is not None else default_out(r)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot write the report to {directory}: {e.strerror or e}") from None
    image = render_progress(plot_points(r), directory / IMAGE, title=plot_title(r))
    text = format_markdown(r, IMAGE)
    markdown = _write_text(directory / MARKDOWN, text + "\n")
    page = None
    if html:
        page = _write_text(directory / HTML, markdown_to_html(text, title=f"autoresearch report: {r.name}",
                                                              images={IMAGE: image.read_bytes()}))
    return ReportFiles(directory=directory, markdown=markdown, plot=image, html=page)


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------------------
# html: the markdown above rendered simply (the subset format_markdown writes), in one self-contained file

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:.6em 0;font-size:.92em}th,td{border:1px solid #ddd;
padding:.25em .6em;vertical-align:top}th{background:#f4f4f4}td.r{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:.6em;overflow-x:auto;font-size:.85em}.add{color:#116329;
background:#e6ffec}.del{color:#82071e;background:#ffebe9}.hunk{color:#6f42c1}img{max-width:100%}blockquote{border-left:
4px solid #e0c36a;margin:.6em 0;padding:.2em .8em;background:#fffbea}code{background:#f2f2f2;padding:0 .2em}"""


def _inline(text: str) -> str:
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html_mod.escape(part[1:-1])}</code>")
            continue
        s = html_mod.escape(part.replace("\\|", "|"))
        s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"(?<!\w)_(.+?)_(?!\w)", r"<em>\1</em>", s)
        out.append(s)
    return "".join(out)


def _table_cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [c.strip() for c in cells[1:-1]]


def markdown_to_html(text: str, *, title: str, images: dict[str, bytes]) -> str:
    lines = text.splitlines()
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(`{3,})(\w*)$", line)
        if fence:
            end = next((j for j in range(i + 1, len(lines)) if lines[j] == fence.group(1)), len(lines))
            code = []
            for ln in lines[i + 1:end]:
                cls = ("hunk" if ln.startswith(("@@", "+++ ", "--- ")) else "add" if ln.startswith("+")
                       else "del" if ln.startswith("-") else "")
                esc = html_mod.escape(ln)
                code.append(f'<span class="{cls}">{esc}</span>' if cls else esc)
            body.append("<pre>" + "\n".join(code) + "</pre>")
            i = end + 1
            continue
        heading = re.match(r"^(#{1,6}) (.*)$", line)
        image = re.match(r"^!\[([^\]]*)\]\(([^)]+)\)$", line)
        if heading:
            level = len(heading.group(1))
            body.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif image:
            data = images.get(image.group(2))
            src = f"data:image/png;base64,{base64.b64encode(data).decode()}" if data is not None else image.group(2)
            body.append(f'<p><img alt="{html_mod.escape(image.group(1))}" src="{src}"></p>')
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            head, rules, rest = _table_cells(block[0]), _table_cells(block[1]) if len(block) > 1 else [], block[2:]
            right = [r.endswith(":") for r in rules]
            rows = ["<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"]
            for row in rest:
                rows.append("<tr>" + "".join(f'<td{" class=r" if n < len(right) and right[n] else ""}>{_inline(c)}</td>'
                                             for n, c in enumerate(_table_cells(row))) + "</tr>")
            body.append("<table>" + "".join(rows) + "</table>")
            continue
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.startswith("> "):
            body.append(f"<blockquote>{_inline(line[2:])}</blockquote>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
        i += 1
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html_mod.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
