"""[notify]: webhooks (ntfy, Slack, Discord) against a real HTTP server on 127.0.0.1, the desktop notifier through a
stand-in program on PATH, the watcher's decisions over real ledger events, the ledger's observer hook, config checks."""

from __future__ import annotations

import email.header
import json
import os
import socket
import sys
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autoresearch.config import ConfigError
from autoresearch.engine.events import (Decision, ExperimentRepaired, ExperimentStarted, Paused, Phase, Resumed,
                                        RunStarted, Stalled, Stopped, TrainingFinished)
from autoresearch.engine.ledger import Ledger
from autoresearch.engine.notify import (EVENTS, Notifier, NotifySettings, NotifyWatcher, attach, build_payload,
                                        detect_format, redact_url)
from autoresearch.engine.stall import StallWatch, default_stall_seconds, is_stalled

SECRET = "tk_s3cr3t-topic"


# ----------------------------------------------------------------------------------------------------
# a real webhook receiver


class _Receiver:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.cond = threading.Condition()
        self.flaky_seen = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.path.startswith("/flaky") and receiver.flaky_seen == 0:
                    receiver.flaky_seen += 1
                    self.close_connection = True  # hang up without a reply: a connection error for the client
                    return
                if self.path.startswith("/slow"):
                    time.sleep(0.15)
                status = 500 if self.path.startswith("/fail") else 200
                # recorded before the reply: the client sends its next one only after this reply, so the
                # requests list keeps the order they were sent in (after the reply, a second handler thread
                # could record the next request first)
                with receiver.cond:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                              "status": status})
                    receiver.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait(self, n: int, timeout: float = 5.0) -> list[dict]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.requests) >= n, timeout)
            return list(self.requests)


@pytest.fixture
def receiver():
    r = _Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


class _Log(list):
    def __call__(self, line: str) -> None:
        self.append(line)


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ----------------------------------------------------------------------------------------------------
# webhooks


def test_ntfy_plain_post_with_title_tags_priority(receiver) -> None:
    log = _Log()
    n = Notifier(NotifySettings(url=receiver.url(f"/{SECRET}")), "mar8", log)
    t0 = time.perf_counter()
    assert n.send("new_best", "new best, exp 12", "exp 12 kept: val_bpb 0.9812 (-0.0021)\nhalve the batch")
    assert time.perf_counter() - t0 < 0.2  # a queue put, not a request
    assert n.send("crash_streak", "3 failed — in a row", "exp 3 crash: …")
    assert n.close(5)
    first, second = receiver.wait(2)
    assert first["path"] == f"/{SECRET}"
    assert first["body"].decode() == "exp 12 kept: val_bpb 0.9812 (-0.0021)\nhalve the batch"
    assert first["headers"]["Title"] == "autoresearch mar8: new best, exp 12"
    assert first["headers"]["Tags"] == "tada" and first["headers"]["Priority"] == "default"
    assert first["headers"]["Content-Type"].startswith("text/plain")
    # a non-ASCII title travels as an RFC 2047 encoded word (ntfy decodes those)
    (raw, charset), = email.header.decode_header(second["headers"]["Title"])
    assert raw.decode(charset) == "autoresearch mar8: 3 failed — in a row"
    assert second["headers"]["Priority"] == "high"
    assert log == []


def test_slack_json(receiver) -> None:
    n = Notifier(NotifySettings(url=receiver.url("/services/T0/B0/xyz"), format="slack"), "mar8", _Log())
    n.send("stopped", "stopped", "3 experiment(s) done <&>")
    n.close(5)
    (req,) = receiver.wait(1)
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == {"text": "*autoresearch mar8: stopped*\n3 experiment(s) done &lt;&amp;&gt;"}


def test_discord_json(receiver) -> None:
    n = Notifier(NotifySettings(url=receiver.url("/api/webhooks/1/abc"), format="discord"), "mar8", _Log())
    n.send("new_best", "new best, exp 2", "@everyone exp 2 kept")
    n.close(5)
    (req,) = receiver.wait(1)
    payload = json.loads(req["body"])
    assert payload["content"] == "**autoresearch mar8: new best, exp 2**\n@everyone exp 2 kept"
    assert payload["username"] == "autoresearch"
    assert payload["allowed_mentions"] == {"parse": []}


def test_format_detection_and_payload_limits() -> None:
    assert detect_format("https://hooks.slack.com/services/T/B/x") == "slack"
    assert detect_format("https://discord.com/api/webhooks/1/x") == "discord"
    assert detect_format("https://discordapp.com/api/webhooks/1/x") == "discord"
    assert detect_format("https://discord.com/channels/1") == "ntfy"
    assert detect_format("https://ntfy.sh/topic") == "ntfy"
    assert NotifySettings(url="https://hooks.slack.com/services/x").webhook_format == "slack"
    assert NotifySettings(url="https://hooks.slack.com/services/x", format="ntfy").webhook_format == "ntfy"
    assert NotifySettings().webhook_format is None
    data, _ = build_payload("discord", "stall", "t", "x" * 5000)
    assert len(json.loads(data)["content"]) <= 2000


def test_dead_port_is_logged_not_raised_and_the_token_stays_out() -> None:
    port = _dead_port()
    log = _Log()
    n = Notifier(NotifySettings(url=f"http://127.0.0.1:{port}/{SECRET}?auth={SECRET}", timeout=2), "t", log,
                 retry_delay=0.01)
    assert n.send("stopped", "stopped", "done")
    assert n.close(5)
    assert len(log) == 1, log
    assert log[0].startswith(f"notify: the webhook at http://127.0.0.1:{port} failed: connection refused")
    assert SECRET not in log[0]


def test_http_500_is_logged_once_without_retry_and_without_the_path(receiver) -> None:
    log = _Log()
    n = Notifier(NotifySettings(url=receiver.url(f"/fail/{SECRET}")), "t", log, retry_delay=0.01)
    n.send("stall", "no progress", "stuck")
    n.close(5)
    assert len(receiver.wait(1)) == 1
    assert log == [f"notify: the webhook at http://127.0.0.1:{receiver.port} failed: HTTP 500 (stall not delivered)"]
    assert len(receiver.requests) == 1  # an HTTP error is an answer: not retried


def test_one_retry_after_a_dropped_connection(receiver) -> None:
    log = _Log()
    n = Notifier(NotifySettings(url=receiver.url("/flaky")), "t", log, retry_delay=0.01)
    n.send("new_best", "new best", "b")
    n.close(5)
    assert receiver.flaky_seen == 1
    assert [r["body"] for r in receiver.wait(1)] == [b"b"]
    assert log == []


def test_send_never_blocks_on_a_slow_webhook_and_close_waits_for_it(receiver) -> None:
    n = Notifier(NotifySettings(url=receiver.url("/slow")), "t", _Log())
    t0 = time.perf_counter()
    for i in range(3):
        n.send("new_best", f"n{i}", "b")
    assert time.perf_counter() - t0 < 0.2
    assert n.close(10)
    assert len(receiver.requests) == 3  # delivered before close returned
    assert not n.send("stopped", "late", "b")  # closed: nothing more is taken


def test_events_not_asked_for_are_not_sent(receiver) -> None:
    n = Notifier(NotifySettings(url=receiver.url("/t"), events=("stopped",)), "t", _Log())
    assert not n.send("new_best", "x", "y")
    assert n.send("stopped", "stopped", "y")
    n.close(5)
    assert [r["body"] for r in receiver.wait(1)] == [b"y"]


def test_redact_url() -> None:
    assert redact_url(f"https://user:pw@ntfy.example.org:8443/{SECRET}?x=1") == "https://ntfy.example.org:8443"
    assert redact_url("https://hooks.slack.com/services/T/B/x") == "https://hooks.slack.com"
    assert redact_url("nonsense") == "<an unparsable URL>"


# ----------------------------------------------------------------------------------------------------
# desktop


def _stand_in(folder: Path, name: str, exit_code: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    record = folder / f"{name}.argv.json"
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      f"open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
                      f"sys.stderr.write('no D-Bus session here\\n')\nsys.exit({exit_code})\n")
    script.chmod(0o755)
    return record


def test_desktop_notify_send_on_linux(tmp_path: Path, monkeypatch) -> None:
    record = _stand_in(tmp_path / "bin", "notify-send")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    log = _Log()
    n = Notifier(NotifySettings(desktop=True), "mar8", log, platform="linux")
    assert n.send("new_best", "new best, exp 3", 'exp 3 kept: "quoted" and \\ back')
    assert n.close(10)
    argv = json.loads(record.read_text())
    assert argv[-2:] == ["autoresearch mar8: new best, exp 3", 'exp 3 kept: "quoted" and \\ back']
    assert log == []


def test_desktop_osascript_on_macos_passes_the_texts_as_arguments(tmp_path: Path, monkeypatch) -> None:
    record = _stand_in(tmp_path / "bin", "osascript")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    n = Notifier(NotifySettings(desktop=True), "mar8", _Log(), platform="darwin")
    n.send("stopped", 'say "hi"', 'a "b" \\ c')
    n.close(10)
    argv = json.loads(record.read_text())
    assert argv[-2:] == ['autoresearch mar8: say "hi"', 'a "b" \\ c']
    script = " ".join(argv[:-2])
    assert "display notification (item 2 of argv) with title (item 1 of argv)" in script and '"hi"' not in script


def test_no_desktop_notifier_is_said_once(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    log = _Log()
    n = Notifier(NotifySettings(desktop=True), "t", log, platform="linux")
    assert not n.send("stopped", "a", "b") and not n.send("stopped", "c", "d")
    n.close(1)
    assert len(log) == 1 and "no desktop notifier" in log[0] and "notify-send" in log[0]


def test_a_failing_desktop_notifier_is_logged(tmp_path: Path, monkeypatch) -> None:
    _stand_in(tmp_path / "bin", "notify-send", exit_code=1)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    log = _Log()
    n = Notifier(NotifySettings(desktop=True), "t", log, platform="linux")
    n.send("stopped", "a", "b")
    n.close(10)
    assert log == ["notify: notify-send failed (exit 1): no D-Bus session here"]


# ----------------------------------------------------------------------------------------------------
# the watcher's decisions (pure)


def _d(ev) -> dict:
    return ev.to_dict()


def _start(i: int, description: str, kind: str = "agent") -> dict:
    return _d(ExperimentStarted(index=i, kind=kind, description=description, commit=f"c{i}"))


def _decide(i: int, status: str, val: float | None = None, delta: float | None = None, reason: str = "") -> dict:
    return _d(Decision(index=i, status=status, val_bpb=val, delta=delta, reason=reason))


def _kinds(notices) -> list[str]:
    return [n.kind for n in notices]


def test_watcher_new_best_crash_streak_stopped() -> None:
    w = NotifyWatcher(None, NotifySettings(crash_streak=3))
    told = []
    for ev in [_d(RunStarted(pid=1)), _start(0, "baseline", "baseline"),
               _d(TrainingFinished(index=0, outcome="ok", val_bpb=0.9979)), _decide(0, "keep", 0.9979, reason="baseline")]:
        told += w.decide(ev)
    assert told == []  # the baseline is no news
    told = w.decide(_start(1, "halve batch 524K to 262K")) + w.decide(_decide(1, "keep", 0.9812, -0.0167))
    (best,) = told
    assert best.kind == "new_best" and best.title == "new best, exp 1"
    assert best.body.splitlines() == ["exp 1 kept: val_bpb 0.9812 (-0.0167)", "halve batch 524K to 262K",
                                      "-0.0167 since the baseline (0.9979)"]
    assert w.decide(_start(2, "warmup")) + w.decide(_decide(2, "discard", 0.9830, 0.0018)) == []
    streak = []
    for i, status in zip(range(3, 8), ["crash", "oom", "timeout", "nan", "crash"]):
        streak += w.decide(_start(i, f"idea {i}"))
        streak += w.decide(_decide(i, status, reason=f"boom {i}"))
    (crash,) = streak  # once per streak, at the third failure
    assert crash.kind == "crash_streak" and crash.title == "3 failed experiments in a row"
    assert crash.body.splitlines() == ["exp 3 crash: idea 3 (boom 3)", "exp 4 oom: idea 4 (boom 4)",
                                       "exp 5 timeout: idea 5 (boom 5)"]
    # a repaired experiment is described by its repair; a keep ends the streak, and a new one is told again
    w.decide(_start(8, "first try"))
    w.decide(_d(ExperimentRepaired(index=8, description="fixed try")))
    (kept,) = w.decide(_decide(8, "keep", 0.9801, -0.0011))
    assert "fixed try" in kept.body and "(-0.0011)" in kept.body
    again = []
    for i in (9, 10, 11):
        again += w.decide(_start(i, "x")) + w.decide(_decide(i, "crash"))
    assert _kinds(again) == ["crash_streak"]
    (stopped,) = w.decide(_d(Stopped(reason="SIGTERM: stopped after the experiment")))
    assert stopped.kind == "stopped" and stopped.priority is None
    assert stopped.body.splitlines() == ["SIGTERM: stopped after the experiment",
                                         "best val_bpb 0.9801 (exp 8), -0.0178 since the baseline"]
    (err,) = w.decide(_d(Stopped(reason="error: RuntimeError: x")))
    assert err.title == "stopped on an error" and err.priority == "high"


def test_watcher_ignores_reverts_and_interruptions() -> None:
    w = NotifyWatcher(None, NotifySettings(crash_streak=2))
    w.decide(_start(0, "baseline", "baseline"))
    w.decide(_decide(0, "keep", 1.0))
    assert w.decide(_start(1, "revert exp 0", "revert")) + w.decide(_decide(1, "keep", 0.99, -0.01)) == []
    w.decide(_start(2, "a"))
    w.decide(_decide(2, "crash"))
    assert w.decide({"event": "experiment_interrupted", "index": 3, "reason": "engine restarted"}) == []
    w.decide(_start(4, "b"))
    assert _kinds(w.decide(_decide(4, "invalid"))) == ["crash_streak"]  # the interruption did not break the streak


def test_watcher_disk_floor_once_per_episode() -> None:
    w = NotifyWatcher(None, NotifySettings())
    told = w.decide(_d(Paused(reason="disk: 0.42 GB free, below 1.0 GB")))
    told += w.decide(_d(Phase(phase="waiting_for_disk", detail="0.42 GB free")))
    (disk,) = told
    assert disk.kind == "disk_floor" and disk.body.startswith("disk: 0.42 GB free, below 1.0 GB.")
    assert w.decide(_d(Phase(phase="waiting_for_disk", detail="0.40 GB free"))) == []
    w.decide(_d(Resumed()))
    w.decide(_d(Phase(phase="proposing", index=5)))
    assert _kinds(w.decide(_d(Phase(phase="waiting_for_disk", detail="0.1 GB free")))) == ["disk_floor"]


def test_stall_watch_once_per_episode_and_not_while_paused() -> None:
    w = StallWatch(600, clock=lambda: 0.0)
    w.observe(_d(RunStarted(pid=1)), now=0)
    w.observe(_start(4, "swap the activation"), now=1)
    w.observe(_d(Phase(phase="proposing", index=4)), now=2)
    assert w.due(now=599) is None
    stall = w.due(now=600)
    assert stall is not None and stall.seconds == 600 and stall.limit_seconds == 600
    assert (stall.phase, stall.index) == ("proposing", 4)
    assert w.due(now=900) is None  # one per episode
    w.observe(_d(TrainingFinished(index=4, outcome="ok", val_bpb=1.0)), now=1000)  # progress ends the episode
    assert w.due(now=1599) is None and w.due(now=1600) is not None
    w.output(now=1700)  # a line of training output is progress too
    assert w.due(now=2299) is None
    w.observe(_decide(4, "discard", 1.0, 0.001), now=2000)
    w.observe(_d(Phase(phase="paused")), now=2001)
    assert w.due(now=9000) is None  # a pause is not a stall
    w.observe(_d(Phase(phase="proposing", index=5)), now=9001)  # ... and its time does not count
    assert w.due(now=9500) is None and w.due(now=9601) is not None
    w.observe(_d(TrainingFinished(index=5, outcome="ok", val_bpb=1.0)), now=9650)
    w.observe({"event": "training_started", "index": 5, "purpose": "confirm"}, now=9700)  # (not progress itself)
    stall = w.due(now=10250)
    assert stall is not None and (stall.phase, stall.index, stall.detail) == ("training", 5, "confirming with another seed")


def test_stall_limits() -> None:
    assert is_stalled(100, 0, 100) and not is_stalled(99, 0, 100) and not is_stalled(10**9, 0, None)
    assert default_stall_seconds(300) == 1800 and default_stall_seconds(1800) == 4 * 1800 + 600
    assert StallWatch(None).due(now=10**9) is None  # no limit: never


def test_the_watchdog_records_a_stall_from_its_own_thread(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    w = StallWatch(0.2)
    led.observers.append(w.observe)
    led.append(RunStarted(pid=1))
    led.append(_d(Phase(phase="proposing", index=1)))
    w.start(led.append, interval=0.05)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(e["event"] == "stalled" for e in led.events()):
            time.sleep(0.05)
    finally:
        w.stop()
    (stall,) = [e for e in Ledger(tmp_path).events() if e["event"] == "stalled"]  # once, however long it waited
    assert stall["phase"] == "proposing" and stall["index"] == 1 and stall["seconds"] >= 0.2


def test_watcher_tells_a_stall_the_engine_recorded() -> None:
    w = NotifyWatcher(None, NotifySettings())
    w.decide(_start(4, "swap the activation"))
    (notice,) = w.decide(_d(Stalled(seconds=2700, limit_seconds=1800, phase="proposing", index=4)))
    assert notice.kind == "stall" and notice.title == "no progress"
    assert notice.body == ("no experiment or training finished for 45 min; the engine is proposing exp 4 "
                           "(swap the activation). Check the engine log.")


def test_prime_reads_history_without_telling() -> None:
    w = NotifyWatcher(None, NotifySettings(crash_streak=2))
    w.prime([_start(0, "baseline", "baseline"), _decide(0, "keep", 1.0), _start(1, "a"), _decide(1, "crash"),
             _start(2, "b"), _decide(2, "crash"), _d(Stopped(reason="x"))])
    assert w.decide(_start(3, "c")) + w.decide(_decide(3, "oom")) == []  # that streak was already told
    (best,) = w.decide(_start(4, "d")) + w.decide(_decide(4, "keep", 0.9, -0.1))
    assert "since the baseline (1.0000)" in best.body


# ----------------------------------------------------------------------------------------------------
# the ledger's observers, and everything together


def test_ledger_observers_see_durable_events_and_cannot_break_it(tmp_path: Path) -> None:
    led = Ledger(tmp_path)
    seen: list[dict] = []
    on_disk: list[int] = []

    def record(ev: dict) -> None:
        seen.append(ev)
        on_disk.append(len(Ledger(tmp_path, writable=False).events()))  # already written when we are told

    def broken(ev: dict) -> None:
        raise RuntimeError("a broken notifier")

    led.observers += [broken, record]
    stored = led.append(RunStarted(pid=1))
    assert seen == [stored] and "ts" in stored and on_disk == [1]
    more = led.append_many([_start(0, "baseline", "baseline"), _decide(0, "keep", 1.0)])
    assert seen[1:] == more and on_disk == [1, 3, 3]
    assert len(Ledger(tmp_path).events()) == 3


def test_attach_notifies_from_the_ledger(tmp_path: Path, receiver) -> None:
    led = Ledger(tmp_path)
    led.append_many([_start(0, "baseline", "baseline"), _decide(0, "keep", 0.9979)])
    log = _Log()
    settings = NotifySettings.from_table(tomllib.loads(f'[notify]\nurl = "{receiver.url("/" + SECRET)}"\n')["notify"])
    watcher = attach(led, settings, "mar8", log)
    assert watcher is not None and watcher.observe in led.observers
    led.append(_start(1, "halve the batch"))
    led.append(_decide(1, "keep", 0.9812, -0.0167))
    led.append(Stopped(reason="1 experiment(s) done"))
    assert watcher.close(5)
    got = receiver.wait(2)
    assert [r["headers"]["Title"] for r in got] == ["autoresearch mar8: new best, exp 1", "autoresearch mar8: stopped"]
    assert got[0]["body"].decode().startswith("exp 1 kept: val_bpb 0.9812 (-0.0167)\nhalve the batch")
    assert got[1]["body"].decode().splitlines() == ["1 experiment(s) done",
                                                    "best val_bpb 0.9812 (exp 1), -0.0167 since the baseline"]
    assert log == []
    assert attach(led, NotifySettings(), "mar8", log) is None  # nothing configured: nothing attached


# ----------------------------------------------------------------------------------------------------
# config


def test_settings_defaults_and_a_full_table() -> None:
    assert NotifySettings.from_table(None) == NotifySettings()
    assert not NotifySettings().enabled and NotifySettings().events == EVENTS
    s = NotifySettings.from_table(tomllib.loads("""
        [notify]
        url = "https://ntfy.sh/abc"
        format = "ntfy"
        desktop = true
        events = ["new_best", "stopped"]
        crash_streak = 5
        stall_minutes = 45
        timeout = 3
    """)["notify"])
    assert s == NotifySettings(url="https://ntfy.sh/abc", format="ntfy", desktop=True, events=("new_best", "stopped"),
                               crash_streak=5, stall_minutes=45.0, timeout=3.0)
    assert NotifySettings.from_table({"url": ""}).url is None


@pytest.mark.parametrize("table, key, expected", [
    ({"url": 5}, "url", "a string"),
    ({"url": f"ftp://files.example.org/{SECRET}"}, "url", "http:// or https://"),
    ({"url": "https:///nohost"}, "url", "with a host"),
    ({"format": "teams"}, "format", '"slack"'),
    ({"desktop": "yes"}, "desktop", "true or false"),
    ({"events": "stopped"}, "events", "a list"),
    ({"events": ["stopped", "new_bets"]}, "events", '"new_best"'),
    ({"crash_streak": 0}, "crash_streak", "at least 1"),
    ({"crash_streak": 2.5}, "crash_streak", "whole number"),
    ({"stall_minutes": -1}, "stall_minutes", "positive number"),
    ({"stall_minutes": True}, "stall_minutes", "positive number"),
    ({"timeout": 0}, "timeout", "seconds"),
    ({"evnts": []}, "evnts", "the keys are"),
])
def test_bad_values_are_config_errors(table, key, expected) -> None:
    with pytest.raises(ConfigError) as info:
        NotifySettings.from_table(table, source="/home/u/.config/autoresearch/config.toml")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith("/home/u/.config/autoresearch/config.toml: [notify] ")
    assert key in message and expected in message, message
    assert SECRET not in message


def test_notify_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match=r"\[notify\] must be a table"):
        NotifySettings.from_table("https://ntfy.sh/x")  # type: ignore[arg-type]
