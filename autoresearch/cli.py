"""The `autoresearch` command line.

Errors the user can act on (bad data, bad config, unreachable servers) are printed as one clear message
with exit status 1; a traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import __version__
from . import config as config_mod

# Exceptions whose message is written for the user: print it, no traceback.
_USER_ERRORS: tuple[type[BaseException], ...] = ()


def _user_errors() -> tuple[type[BaseException], ...]:
    global _USER_ERRORS
    if not _USER_ERRORS:
        from .agent.base import AgentError
        from .backends import BackendError
        from .engine.control import ControlError
        from .engine.ledger import LedgerError
        from .engine.rundir import RunError
        from .hardware import ProfileError
        from .harness.manifest import DataError

        _USER_ERRORS = (DataError, config_mod.ConfigError, ProfileError, RunError, AgentError, BackendError, ControlError,
                        LedgerError)
    return _USER_ERRORS


class _Group(click.Group):
    """Turns known errors into a one-line message unless --debug is given."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            sys.exit(130)
        except Exception as e:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if isinstance(e, _user_errors()):
                click.secho(f"error: {e}", fg="red", err=True)
            else:
                click.secho(f"unexpected error: {type(e).__name__}: {e}", fg="red", err=True)
                click.echo("Run again with --debug for the full traceback.", err=True)
            sys.exit(1)


@click.group(cls=_Group, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(__version__, prog_name="autoresearch")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Autonomous overnight ML research on one machine.

    An LLM agent edits a small GPT training script; autoresearch trains it for a fixed time budget,
    measures validation bits per byte, and keeps a change only when it is really better.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    if ctx.invoked_subcommand is None:
        if not _interactive():
            click.echo(ctx.get_help())
            return
        from .tui.launch import open_app

        open_app(None, runs_dir=config_mod.load().runs_dir, debug=debug)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the report.")
@click.option("--no-llm", is_flag=True, help="Do not contact the LLM server.")
def doctor(as_json: bool, no_llm: bool) -> None:
    """Show the detected hardware, the backend and profile a run would use, the LLM server and the datasets."""
    from .doctor import diagnose, format_report

    report = diagnose(config_mod.load(), check_llm=not no_llm)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(format_report(report))


@main.command()
@click.option("--dataset", "dataset", metavar="NAME|PATH", help="stdlib, tinystories, climbmix, or a local .txt/.jsonl/.parquet file or folder. Default: the profile's.")
@click.option("--vocab", type=int, help="Vocabulary size (256 = byte level). Default: the profile's.")
@click.option("--force", is_flag=True, help="Prepare again even if a prepared copy exists.")
@click.option("--max-bytes", type=int, default=None, help="Use only the first N bytes of text (a quick slice).")
def prepare(dataset: str | None, vocab: int | None, force: bool, max_bytes: int | None) -> None:
    """Download (if needed), tokenize and shard a dataset, with a checksummed manifest."""
    from .hardware import detect, profile_for
    from .harness.prepare import prepare as run_prepare
    from .progress import TqdmProgress

    settings = config_mod.load()
    if dataset is None or vocab is None:
        profile = profile_for(detect(), settings.profile_overrides)
        dataset = dataset or profile.dataset
        vocab = vocab or profile.vocab_size
    if vocab < 256:
        raise click.BadParameter("must be at least 256 (256 gives a byte-level tokenizer)", param_hint="--vocab")
    prepared = run_prepare(dataset, vocab, root=settings.data_dir, progress=TqdmProgress(), force=force, max_bytes=max_bytes)
    m = prepared.manifest
    click.echo(f"Prepared {m.dataset} (vocab {m.vocab_size}) in {prepared.directory}")
    for split in m.splits:
        docs = sum(s.docs for s in m.splits[split])
        click.echo(f"  {split:<5} {docs:>9,} documents  {m.split_tokens(split):>12,} tokens  {len(m.splits[split])} shard(s)")
    stats = m.stats
    if "bytes_per_token" in stats:
        click.echo(f"  {stats['bytes_per_token']:.2f} bytes/token", nl=False)
        if "unigram_bpb" in stats:
            click.echo(f", unigram baseline {stats['unigram_bpb']:.3f} bits/byte", nl=False)
        click.echo("")
    click.echo(f"  manifest {m.digest[:16]}")


@main.command()
@click.option("--dataset", metavar="NAME|PATH", help="Prepared dataset to train on. Default: the profile's.")
@click.option("--vocab", type=int, help="Vocabulary of the prepared data. Default: the profile's.")
@click.option("--budget", type=float, help="Training seconds. Default: the profile's.")
@click.option("--backend", type=click.Choice(["torch", "mlx"]), help="Default: the profile's.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--script", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Training script. Default: the backend's template.")
def train(dataset: str | None, vocab: int | None, budget: float | None, backend: str | None, seed: int, script: Path | None) -> None:
    """Train a script once with the harness (no agent) and print its summary: a baseline, a smoke test."""
    from .training.once import train_once

    result = train_once(dataset=dataset, vocab=vocab, budget=budget, backend=backend, seed=seed, script=script,
                        on_line=click.echo)
    if result.status == "ok":
        click.secho(f"ok: val_bpb {result.val_bpb:.6f} in {result.wall_seconds:.0f}s (log: {result.log_path})", fg="green")
    else:
        click.secho(f"{result.status}: {result.reason}", fg="red", err=True)
        click.echo(f"log: {result.log_path}", err=True)
        sys.exit(1)


def _stamp(line: str) -> None:
    click.echo(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}")


@main.command()
@click.option("--headless", is_flag=True, help="Run the engine here, printing plain timestamped lines (no app): for tmux, nohup, systemd, SSH.")
@click.option("--tag", help="Run name under the runs directory: resumes it if it exists. Default: a new run named by date.")
@click.option("--dataset", metavar="NAME|PATH", help="Prepared dataset. Default: the profile's.")
@click.option("--backend", type=click.Choice(["torch", "mlx"]), help="Default: the profile's.")
@click.option("--budget", type=float, help="Training seconds per experiment. Default: the profile's.")
@click.option("--agent", "agent_spec", metavar="SPEC",
              help="The researcher: ollama:MODEL, openai:MODEL, anthropic:MODEL, search (no LLM), plugin:module:factory, or "
                   "baseline (train the baseline and stop). Default: the config's [agent] default, else the largest coder "
                   "model in Ollama that fits, else search.")
@click.option("--prompts", "prompts", type=click.Path(file_okay=False, path_type=Path),
              help="Edited prompts for an LLM researcher (`autoresearch init-prompts DIR` makes a copy to edit).")
@click.option("--llm-url", help="Base URL of an OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1).")
@click.option("--edit-format", "edit_formats", multiple=True, type=click.Choice(["search_replace", "whole_file", "knobs"]),
              help="How the LLM writes its change; repeat for a fallback chain. Default: chosen per model (config [agent]).")
@click.option("--pull", is_flag=True, help="Pull a missing Ollama model without asking.")
@click.option("--max-experiments", type=int, help="Stop after N more experiments have an outcome (a new run's first is the baseline).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True),
              help="Stop within H hours: no experiment starts that would end later (e.g. --hours 8 before bed).")
@click.option("--policy", type=click.Choice(["noise", "greedy"]),
              help="noise (default): keep only improvements clearly above the measured noise; greedy: upstream's rule.")
@click.option("--early-stop", "early_stop", type=click.Choice(["off", "safe", "aggressive"]),
              help="Stop a change's training part-way when its loss curve is clearly worse than the best's, beyond the "
                   "seeds' spread (a discard, never kept). safe (default): from 30%, 4 spreads; aggressive: from 20%, 2.5.")
@click.option("--propose-ahead", "propose_ahead", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Have the agent write the next proposal while an experiment trains. auto: when its model runs on "
                   "another machine (a hosted API); on: also a local one (it competes with the training).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), help="Where runs live. Default: ./runs or the config's.")
def run(headless: bool, tag: str | None, dataset: str | None, backend: str | None, budget: float | None,
        agent_spec: str | None, prompts: Path | None, llm_url: str | None, edit_formats: tuple[str, ...], pull: bool,
        max_experiments: int | None, hours: float | None, policy: str | None, early_stop: str | None,
        propose_ahead: str, runs_dir: Path | None) -> None:
    """Create or resume a run and research until stopped.

    Without --headless the engine is started in the background (it keeps running when the app, the terminal or
    the SSH connection closes) and the dashboard opens on it. With --headless it runs here: Ctrl-C stops after
    the current experiment, a second Ctrl-C stops now.
    """
    from .agent.factory import load_agent
    from .engine.create import open_or_create
    from .engine.loop import Engine, EngineOptions
    from .engine.signals import install_signal_handlers

    if not headless and not _interactive():
        headless = True  # no terminal for the app (a pipe, cron, CI): the plain lines of --headless
        _stamp("no terminal for the app: running headless (pass --headless to say so)")
    settings = config_mod.load()
    runs = runs_dir or settings.runs_dir
    _notify_settings(settings)  # a bad [notify] is said before anything is created

    def agent_for(spec: str | None, url: str | None, resuming: bool = False, prompts_dir: str | None = None) -> Any:
        agent = load_agent(spec, config=settings.agent, base_url=url, host=settings.ollama_host,
                           formats=list(edit_formats) or None, prompts=prompts_dir) if spec else None
        _check_agent(agent, pull, wait_if_down=resuming)
        return agent

    if agent_spec is None and not _existing_run(runs, tag):  # a new run researches with the best researcher here
        agent_spec = _default_researcher(settings)
    elif agent_spec == "baseline":
        agent_spec = None
    prompts_arg = str(prompts.expanduser().resolve()) if prompts else None
    agent = agent_for(agent_spec, llm_url, prompts_dir=prompts_arg)  # a missing model or a dead server: said first
    run_dir, created = open_or_create(runs, tag, dataset=dataset, backend=backend, budget=budget, agent=agent_spec,
                                      llm_url=llm_url, policy=policy, profile_overrides=settings.profile_overrides,
                                      data_root=settings.data_dir, prompts=prompts_arg, early_stop=early_stop)
    cfg = run_dir.config()
    if agent is None and cfg.get("agent"):  # the run's own agent (and the prompts it was created with)
        agent = agent_for(cfg["agent"], llm_url or cfg.get("llm_url"), resuming=True,
                          prompts_dir=prompts_arg or cfg.get("prompts"))
    if not headless:
        from .engine.launch import launch_detached
        from .tui.launch import open_app

        extra = [*(["--agent", agent_spec] if agent_spec else []), *(["--llm-url", llm_url] if llm_url else []),
                 *(["--prompts", prompts_arg] if prompts_arg else []),
                 *[f"--edit-format={f}" for f in edit_formats],
                 *(["--max-experiments", str(max_experiments)] if max_experiments is not None else []),
                 *(["--hours", str(hours)] if hours else []),
                 *(["--early-stop", early_stop] if early_stop else []),
                 *(["--propose-ahead", propose_ahead] if propose_ahead != "auto" else [])]
        click.echo(f"{'created' if created else 'resuming'} run {run_dir.tag} in {run_dir.path}; starting its engine...")
        pid = launch_detached(run_dir, extra)
        click.echo(f"engine running (pid {pid}); opening the dashboard")
        open_app(run_dir, runs_dir=runs, debug=bool((click.get_current_context().find_root().obj or {}).get("debug")))
        return
    engine = Engine(run_dir, agent, EngineOptions(max_experiments=max_experiments, policy=cfg["policy"], early_stop=early_stop,
                                                  propose_ahead=propose_ahead,
                                                  max_seconds=hours * 3600 if hours else None,
                                                  notify=_notify_settings(settings)), log=_stamp)
    fresh = created or not engine.ledger.events()  # (a run the app created has no events yet: not a resume)
    engine.log(f"{'starting new' if fresh else 'resuming'} run {run_dir.tag} in {run_dir.path}")
    prof = cfg["profile"]
    engine.log(f"{cfg.get('hardware_summary', '')}; profile {prof.get('name')}: {cfg['backend']} on {prof.get('device')}, "
               f"{prof.get('time_budget', 0):.0f}s per experiment, data {cfg.get('dataset')}, policy {cfg.get('policy')}, "
               f"early stop {early_stop or cfg.get('early_stop') or 'safe'}")
    install_signal_handlers(engine, headless=True, log=engine.log)
    reason = engine.run()
    if reason.startswith("the baseline failed"):
        sys.exit(1)


def _notify_settings(settings: config_mod.Settings) -> Any:
    from .engine.notify import NotifySettings

    return NotifySettings.from_table(settings.notify or None, source=settings.source)


def _existing_run(runs: Path, tag: str | None) -> bool:
    from . import paths

    return bool(tag) and (Path(runs) / str(tag) / paths.STATE_DIR / "config.json").exists()


def _default_researcher(settings: config_mod.Settings) -> str | None:
    """The researcher for a run that names none (agent/choice.py), said with its reason."""
    from .agent.choice import choose, memory_for_llm
    from .hardware import detect

    choice = choose(settings.agent.get("default"), settings.ollama_host, memory_for_llm(detect()))
    _stamp(f"researcher: {choice.reason}" + ("" if choice.spec else " (the baseline alone)"))
    return choice.spec


def _check_agent(agent: Any, pull: bool, wait_if_down: bool = False) -> None:
    """Before a night's run: is the researcher ready (agent.readiness)? Offer to pull a missing Ollama model."""
    from .agent.base import AgentError
    from .agent.readiness import check
    from .progress import TqdmProgress

    if agent is None:
        return
    ready = check(agent)
    if ready.ok:
        return
    if ready.unreachable and wait_if_down:  # a resume after a reboot may come before Ollama is up: the loop waits
        _stamp(f"warning: {ready.problem}; the run waits for it (no experiment is spent)")
        return
    if not ready.pullable:
        raise AgentError(ready.problem + ("; then run again." if ready.unreachable else ""))
    provider = agent.provider
    if not pull:
        if not sys.stdin.isatty():
            raise AgentError(f"Ollama at {provider.host} does not have {provider.model}: `ollama pull {provider.model}`, "
                             "or run again with --pull")
        if not click.confirm(f"Ollama at {provider.host} does not have {provider.model}. Pull it now?", default=True):
            raise click.Abort()
    _stamp(f"pulling {provider.model} from the Ollama library through {provider.host}")
    provider.pull(TqdmProgress())
    _stamp(f"pulled {provider.model}")


@main.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the run and its experiments.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path))
def status(run_ref: str | None, as_json: bool, runs_dir: Path | None) -> None:
    """The results table of a run (default: the most recent), or of a results.tsv file (upstream's too)."""
    from .engine.status import format_status, run_status, tsv_status

    tsv = Path(run_ref) if run_ref and run_ref.endswith(".tsv") else None
    if tsv is not None and not tsv.is_file():
        raise click.BadParameter(f"{tsv} is not a file", param_hint="RUN")
    report = tsv_status(tsv) if tsv is not None else run_status(_resolve(run_ref, runs_dir))
    click.echo(json.dumps(report, indent=2, default=str) if as_json else format_status(report))


@main.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--serve", "serve_web", is_flag=True,
              help="Serve the app to a browser on 127.0.0.1 only (no login: reach it through an SSH port forward).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port for --serve.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def watch(ctx: click.Context, run_ref: str | None, serve_web: bool, port: int, runs_dir: Path | None) -> None:
    """Open the dashboard of a run (default: the most recent), also one started headless in another shell or over SSH."""
    from .tui.launch import open_app, serve

    runs = runs_dir or config_mod.load().runs_dir
    run_dir = _resolve(run_ref, runs_dir)
    debug = bool(ctx.find_root().obj.get("debug"))
    if serve_web:
        serve(run_dir, runs_dir=runs, port=port, debug=debug)
        return
    if not _interactive():
        raise click.UsageError("watch needs a terminal; use `autoresearch status` in scripts")
    open_app(run_dir, runs_dir=runs, debug=debug)


def _resolve(run_ref: str | None, runs_dir: Path | None):  # type: ignore[no-untyped-def]
    from .engine.rundir import resolve_run

    return resolve_run(run_ref, runs_dir or config_mod.load().runs_dir)


def _control_command(name: str, command: str, doc: str) -> None:
    @main.command(name=name, help=doc)
    @click.argument("run_ref", metavar="[RUN]", required=False)
    @click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path))
    def _cmd(run_ref: str | None, runs_dir: Path | None) -> None:
        from .engine import control
        from .engine.rundir import RunLock

        run_dir = _resolve(run_ref, runs_dir)
        control.send(run_dir.state, command)
        alive = RunLock(run_dir).is_held()
        note = "" if alive else " (no engine is running it now: pause applies when the run is resumed, skip and resume are dropped)"
        click.echo(f"{command} sent to {run_dir.tag}{note}")


@main.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--now", is_flag=True, help="Stop now: the current experiment is recorded as interrupted and reverted.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path))
def stop(run_ref: str | None, now: bool, runs_dir: Path | None) -> None:
    """Stop a run after the current experiment (or --now)."""
    from .engine import control
    from .engine.rundir import RunLock

    run_dir = _resolve(run_ref, runs_dir)
    if not RunLock(run_dir).is_held():
        click.echo(f"{run_dir.tag} is not running")
        return
    control.send(run_dir.state, "stop-now" if now else "stop")
    click.echo(f"{run_dir.tag} will stop {'now' if now else 'after the current experiment'}")


@main.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.option("--list", "as_list", is_flag=True, help="Print the kept changes and their verdicts (no app).")
@click.option("--json", "as_json", is_flag=True, help="The kept changes as JSON (no app).")
@click.option("--accept", "accept", type=int, multiple=True, metavar="N", help="Accept kept change N (repeatable).")
@click.option("--reject", "reject", type=int, multiple=True, metavar="N", help="Reject kept change N (repeatable).")
@click.option("--unmark", "unmark", type=int, multiple=True, metavar="N", help="Take the verdict on N back.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def review(ctx: click.Context, run_ref: str | None, as_list: bool, as_json: bool, accept: tuple[int, ...],
           reject: tuple[int, ...], unmark: tuple[int, ...], runs_dir: Path | None) -> None:
    """Review the kept changes of a run (default: the most recent): in the app, or with --list / --accept / --reject."""
    import dataclasses

    from .engine.ledger import Ledger
    from .engine.review import format_review, kept_changes, mark

    run_dir = _resolve(run_ref, runs_dir)
    for verdict, indices in (("accept", accept), ("reject", reject), ("unreviewed", unmark)):
        for index in indices:
            mark(run_dir, index, verdict)
            click.echo(f"experiment {index}: {verdict}")
    if accept or reject or unmark or as_list or as_json or not _interactive():
        changes = kept_changes(Ledger(run_dir.path, writable=False))
        if as_json:
            click.echo(json.dumps([dict(dataclasses.asdict(c), confidence=c.confidence, test_disagrees=c.test_disagrees)
                                   for c in changes], indent=2))
        elif as_list or not (accept or reject or unmark):
            click.echo(format_review(changes))
        return
    from .tui.launch import open_app

    open_app(run_dir, runs_dir=runs_dir or config_mod.load().runs_dir, debug=bool(ctx.find_root().obj.get("debug")),
             review=True)


@main.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--patch", "patch", type=click.Path(dir_okay=False, path_type=Path), help="Write one patch of train.py.")
@click.option("--branch", "branch", metavar="NAME", help="Make a git branch with one commit per change.")
@click.option("--repo", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The git repository for --branch (default: the run's own).")
@click.option("--file", "file", default="train.py", show_default=True, help="The script's path inside --repo.")
@click.option("--all-kept", "which", flag_value="all-kept", help="Every kept change (reverted ones left out).")
@click.option("--accepted", "which", flag_value="accepted", default=True, help="The accepted changes (the default).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path))
def export(run_ref: str, patch: Path | None, branch: str | None, repo: Path | None, file: str, which: str,
           runs_dir: Path | None) -> None:
    """Export a run's accepted (or all kept) changes as a patch file or a git branch."""
    from .engine.export import build, write_branch, write_patch

    if bool(patch) == bool(branch):
        raise click.UsageError("give one of --patch FILE or --branch NAME")
    if repo and not branch:
        raise click.UsageError("--repo goes with --branch")
    run_dir = _resolve(run_ref, runs_dir)
    series = build(run_dir, which)
    listing = ", ".join(str(s.change.index) for s in series.steps)
    if patch:
        path = write_patch(series, patch)
        click.echo(f"wrote {path}: experiments {listing} against the baseline train.py (`git apply {path.name}`)")
        return
    assert branch is not None
    commits = write_branch(series, branch, repo, file)
    where = repo or run_dir.path
    click.echo(f"branch {branch} in {where}: {len(commits)} commit(s) (experiments {listing}); "
               f"`git -C {where} log --oneline {branch}`")


@main.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("index", type=int)
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path))
def revert(run_ref: str, index: int, runs_dir: Path | None) -> None:
    """Take kept change INDEX back from the run's best (a new commit; at once, or at the engine's next boundary)."""
    from .engine.review import request_revert

    click.echo(request_revert(_resolve(run_ref, runs_dir), index))


@main.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("index", type=int)
@click.option("--seeds", type=int, default=2, show_default=True, help="More trainings of the change.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path))
def retest(run_ref: str, index: int, seeds: int, runs_dir: Path | None) -> None:
    """Queue more seeds of kept change INDEX (the engine trains them before its next experiment)."""
    from .engine.review import request_retest

    click.echo(request_retest(_resolve(run_ref, runs_dir), index, seeds))


@main.command()
@click.argument("run_ref", metavar="[RUN]", required=False)
@click.argument("text", required=False)
@click.option("--remove", "remove", metavar="N|ID", help="Remove a note (its number in the list, or its id).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path))
def note(run_ref: str | None, text: str | None, remove: str | None, runs_dir: Path | None) -> None:
    """Steer a run's researcher: `note RUN "try a smaller batch"`; without TEXT, list the notes in force."""
    from .engine import notes as notes_mod

    run_dir = _resolve(run_ref, runs_dir)
    if remove:
        gone = notes_mod.remove(run_dir, remove)
        click.echo(f"removed note {gone.id}: {gone.text}")
    elif text:
        added = notes_mod.add(run_dir, text)
        click.echo(f"note {added.id} added to {run_dir.tag}: the researcher reads it from its next proposal on")
        if not notes_mod.reads_notes(run_dir.config().get("agent")):
            click.echo(f"(this run's agent, {run_dir.config().get('agent')}, searches numbers and ignores notes)")
    current = notes_mod.notes(run_dir)
    if not current:
        click.echo("no notes in force")
    else:
        for i, n in enumerate(current, 1):
            click.echo(f"  {i}. [{n.id}] {n.text}  ({(n.ts or '')[:16].replace('T', ' ')})")


@main.command()
@click.option("--minutes", type=click.FloatRange(min=1), help="The session's limit (default 4: under 5 minutes in all).")
@click.option("--budget", type=click.FloatRange(min=2), help="Training seconds per experiment (default 10).")
@click.option("--agent", "agent_spec", metavar="SPEC", help="The researcher (default: the best available, as `run`).")
@click.option("--headless", is_flag=True, help="Plain lines instead of the dashboard.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path))
def demo(minutes: float | None, budget: float | None, agent_spec: str | None, headless: bool, runs_dir: Path | None) -> None:
    """A complete short research run on the built-in stdlib corpus: no download, no GPU, a few minutes."""
    from . import demo as demo_mod
    from .engine.loop import Engine, EngineOptions
    from .engine.signals import install_signal_handlers
    from .engine.status import format_status, run_status

    settings = config_mod.load()
    plan = demo_mod.plan(settings, runs_dir=runs_dir, agent=agent_spec, budget=budget, minutes=minutes, say=_stamp)
    agent = load_agent_checked(plan.agent, settings)
    for line in demo_mod.intro(plan):
        _stamp(line)
    run_dir = demo_mod.create(plan, settings)
    limit = ["--hours", str(plan.minutes / 60)]
    if not headless and _interactive():
        from .engine.launch import launch_detached
        from .tui.launch import open_app

        _stamp(f"created run {run_dir.tag} in {run_dir.path}; its engine starts and the dashboard opens (q leaves "
               "it; the engine stops by itself when the time is up)")
        launch_detached(run_dir, limit)
        open_app(run_dir, runs_dir=plan.runs_dir, debug=bool((click.get_current_context().find_root().obj or {}).get("debug")),
                 stopped_hint="The demo is done: press q to quit; the results table and the report follow.")
        from .engine.rundir import RunLock

        if RunLock(run_dir).is_held():
            click.echo(f"the demo's engine still runs (it stops by itself within {plan.minutes:.0f} minutes of its start): "
                       f"`autoresearch watch {run_dir.tag}`; then `autoresearch report {run_dir.tag}`")
            return
    else:
        engine = Engine(run_dir, agent, EngineOptions(max_seconds=plan.minutes * 60, policy="noise", notify=_notify_settings(settings)), log=_stamp)
        engine.log(f"starting new run {run_dir.tag} in {run_dir.path}")
        install_signal_handlers(engine, headless=True, log=engine.log)
        reason = engine.run()
        if reason.startswith("the baseline failed"):
            sys.exit(1)
    click.echo("")
    click.echo(format_status(run_status(run_dir)))
    click.echo("")
    from .engine.report import write_report

    written = write_report(run_dir)
    for line in demo_mod.outro(run_dir, (written.markdown, written.plot)):
        _stamp(line)


def load_agent_checked(spec: str, settings: config_mod.Settings) -> Any:
    from .agent.factory import load_agent

    agent = load_agent(spec, config=settings.agent, host=settings.ollama_host)
    _check_agent(agent, pull=False)
    return agent


@main.command(name="init-prompts")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="prompts", required=False)
@click.option("--force", is_flag=True, help="Overwrite prompts already there (default: keep them).")
def init_prompts(directory: Path, force: bool) -> None:
    """Copy the researcher's prompts into DIRECTORY (default ./prompts) to edit them; use them with --prompts."""
    from .resources import copy_prompts, prompt_names

    written = copy_prompts(directory, force=force)
    kept = [n for n in prompt_names() if directory / n not in written]
    click.echo(f"copied {len(written)} prompt(s) into {directory}" + (f"; kept your {', '.join(kept)}" if kept else ""))
    click.echo(f"edit them, then: autoresearch run --agent ollama:MODEL --prompts {directory}   "
               f"(or [agent] prompts = \"{directory.resolve()}\" in {config_mod.config_path()})")
    click.echo("each experiment records the digest of the prompts it used, and the run keeps a copy of every version")


@main.command()
@click.argument("run_ref", metavar="[RUN | PATH/results.tsv]", required=False)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the report. Default: RUN/.autoresearch/report/, or ./report-NAME/ for a results.tsv.")
@click.option("--html", is_flag=True, help="Also write report.html: one self-contained file with the plot embedded.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path))
def report(run_ref: str | None, out: Path | None, html: bool, runs_dir: Path | None) -> None:
    """Write the report of a run (default: the most recent) or of a results.tsv: report.md and progress.png."""
    from .engine.report import build_report, summary_line, tsv_source, write_report

    source = tsv_source(run_ref)
    rep = build_report(source if source is not None else _resolve(run_ref, runs_dir))
    files = write_report(rep, out, html=html)
    names = ", ".join(p.name for p in (files.markdown, files.plot, files.html) if p is not None)
    click.echo(f"wrote {names} in {files.directory}")
    click.echo(summary_line(rep))


_control_command("pause", "pause", "Pause a run after the current experiment.")
_control_command("resume", "resume", "Resume a paused run.")
_control_command("skip", "skip", "Abandon the current experiment (recorded as interrupted) and go on.")


if __name__ == "__main__":  # pragma: no cover
    main()
