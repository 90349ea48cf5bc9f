"""Being told: webhook and desktop notifications about a run (the config's ``[notify]`` table).

::

    [notify]
    url = "https://ntfy.sh/my-secret-topic"   # ntfy-style plain POST; Slack and Discord webhooks are recognised
    format = "auto"                            # auto | ntfy | slack | discord
    desktop = true                             # notify-send (Linux) / osascript (macOS), where one exists
    events = ["new_best", "crash_streak", "stall", "stopped", "disk_floor"]   # the default: all of them
    crash_streak = 3                           # failed experiments in a row before telling
    stall_minutes = 45                         # no progress for this long is a stall (default: from the budget)
    timeout = 10                               # seconds per HTTP attempt

Three parts, each usable alone:

- :class:`NotifySettings` parses and checks the table (bad values raise :class:`~autoresearch.config.ConfigError`).
- :class:`Notifier` delivers: :meth:`Notifier.send` only puts on a queue; a daemon thread posts (one retry
  on a connection error) and runs the desktop notifier. Failures go to ``log`` as one line naming only
  the webhook's scheme and host (its path or query may hold a secret token); nothing is ever raised.
- :class:`NotifyWatcher` decides, from the ledger's event dicts (:meth:`NotifyWatcher.observe`, hooked on
  ``Ledger.observers``), when something is worth telling: a new best, a crash streak, the run stopped, the
  disk floor reached, a stall (the engine's watchdog's ``stalled`` event, see :mod:`.stall`). Its decisions
  (:meth:`NotifyWatcher.decide`) are pure: no I/O, testable alone.

:func:`attach` wires all three onto an engine's ledger in one call.
"""

from __future__ import annotations

import base64
import json
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..config import ConfigError
from ..netaddr import on_this_machine
from .stall import doing_words

EVENTS = ("new_best", "crash_streak", "stall", "stopped", "disk_floor")
FORMATS = ("auto", "ntfy", "slack", "discord")
_KEYS = ("url", "format", "desktop", "events", "crash_streak", "stall_minutes", "timeout")
_FAILED = ("crash", "oom", "nan", "timeout", "invalid")  # decision statuses that count towards a crash streak

# ntfy: https://docs.ntfy.sh/publish/ (tags that are emoji short codes show as emoji; priority 1..5 or names)
_NTFY_TAGS = {"new_best": "tada", "crash_streak": "boom", "stall": "hourglass", "stopped": "stop_sign",
              "disk_floor": "floppy_disk"}
_NTFY_PRIORITY = {"new_best": "default", "crash_streak": "high", "stall": "high", "stopped": "default",
                  "disk_floor": "high"}
_LIMITS = {"ntfy": 3900, "slack": 3900, "discord": 1900}  # characters of the message (Discord refuses > 2000)


# ----------------------------------------------------------------------------------------------------
# settings


def redact_url(url: str) -> str:
    """Only the scheme and host (and port) of a URL: what may be shown of a webhook whose path is a secret."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<an unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    if not parts.scheme or not host:
        return "<an unparsable URL>"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _bad(key: str, expected: str, value: Any, source: str | Path | None) -> ConfigError:
    where = f"{source}: " if source else ""
    shown = redact_url(value) if key == "url" and isinstance(value, str) else repr(value)
    return ConfigError(f"{where}[notify] {key} must be {expected}, got {shown}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class NotifySettings:
    """The ``[notify]`` table, checked. Nothing is sent unless ``url`` or ``desktop`` is set."""

    url: str | None = None
    format: str = "auto"
    desktop: bool = False
    events: tuple[str, ...] = EVENTS
    crash_streak: int = 3
    stall_minutes: float | None = None  # None: the caller's default (see default_stall_seconds)
    timeout: float = 10.0

    @classmethod
    def from_table(cls, table: Mapping[str, Any] | None, *, source: str | Path | None = None) -> NotifySettings:
        """Parse the ``[notify]`` table of a ``tomllib``-parsed config (None or absent: notifications off).

        ``source`` (the config file) prefixes error messages."""
        if table is None:
            return cls()
        where = f"{source}: " if source else ""
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}[notify] must be a table (url = \"...\", desktop = true, ...), got {table!r:.80}")
        unknown = sorted(set(table) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{where}[notify] has no key {unknown[0]!r}: the keys are {', '.join(_KEYS)}")
        kw: dict[str, Any] = {}
        if "url" in table:
            url = table["url"]
            if not isinstance(url, str):
                raise _bad("url", "a string (an http:// or https:// webhook URL)", url, source)
            url = url.strip()
            if url:  # url = "" is the same as none
                try:
                    parts = urllib.parse.urlsplit(url)
                    ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
                except ValueError:  # e.g. a port that is not a number
                    ok = False
                if not ok:
                    raise _bad("url", "an http:// or https:// URL with a host", url, source)
                kw["url"] = url
        if "format" in table:
            fmt = table["format"]
            if fmt not in FORMATS:
                raise _bad("format", "one of " + ", ".join(f'"{f}"' for f in FORMATS), fmt, source)
            kw["format"] = fmt
        if "desktop" in table:
            if not isinstance(table["desktop"], bool):
                raise _bad("desktop", "true or false", table["desktop"], source)
            kw["desktop"] = table["desktop"]
        if "events" in table:
            events = table["events"]
            if not isinstance(events, (list, tuple)) or not all(isinstance(e, str) for e in events):
                raise _bad("events", "a list of event names (" + ", ".join(f'"{e}"' for e in EVENTS) + ")", events, source)
            wrong = [e for e in events if e not in EVENTS]
            if wrong:
                raise _bad("events", "a list of " + ", ".join(f'"{e}"' for e in EVENTS), wrong[0], source)
            kw["events"] = tuple(dict.fromkeys(events))
        if "crash_streak" in table:
            n = table["crash_streak"]
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise _bad("crash_streak", "a whole number of failed experiments in a row, at least 1", n, source)
            kw["crash_streak"] = n
        if "stall_minutes" in table:
            m = table["stall_minutes"]
            if not _number(m) or not m > 0 or m == float("inf"):
                raise _bad("stall_minutes", "a positive number of minutes", m, source)
            kw["stall_minutes"] = float(m)
        if "timeout" in table:
            t = table["timeout"]
            if not _number(t) or not 0 < t <= 300:
                raise _bad("timeout", "a number of seconds between 0 and 300", t, source)
            kw["timeout"] = float(t)
        return cls(**kw)

    @property
    def enabled(self) -> bool:
        return bool(self.url) or self.desktop

    @property
    def webhook_format(self) -> str | None:
        """The payload the webhook gets (``format``, with ``auto`` resolved from the URL); None without a URL."""
        if not self.url:
            return None
        if self.format != "auto":
            return self.format
        return detect_format(self.url)

    def wants(self, kind: str) -> bool:
        return kind in self.events


def detect_format(url: str) -> str:
    """``slack`` for hooks.slack.com, ``discord`` for Discord webhooks, otherwise ``ntfy`` (a plain POST)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if host == "hooks.slack.com":
        return "slack"
    if host == "discordapp.com" or host.endswith(".discordapp.com"):
        return "discord"
    if (host == "discord.com" or host.endswith(".discord.com")) and parts.path.startswith("/api/webhooks"):
        return "discord"
    return "ntfy"


# ----------------------------------------------------------------------------------------------------
# payloads (pure)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _header_text(text: str) -> str:
    """A header value: ASCII as is, anything else as an RFC 2047 encoded word (ntfy decodes those)."""
    text = " ".join(text.split())
    if text.isascii():
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_payload(fmt: str, kind: str, title: str, body: str, *, priority: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The request body and headers of one notification in a webhook format (ntfy, slack, discord)."""
    if fmt == "slack":
        text = _truncate(f"*{_slack_escape(title)}*\n{_slack_escape(body)}", _LIMITS["slack"])
        return json.dumps({"text": text}).encode("utf-8"), {"Content-Type": "application/json"}
    if fmt == "discord":
        content = _truncate(f"**{title}**\n{body}", _LIMITS["discord"])
        payload = {"content": content, "username": "autoresearch",
                   "allowed_mentions": {"parse": []}}  # an LLM-written description must not ping @everyone
        return json.dumps(payload).encode("utf-8"), {"Content-Type": "application/json"}
    if fmt != "ntfy":
        raise ValueError(f"unknown webhook format {fmt!r}")
    headers = {"Content-Type": "text/plain; charset=utf-8", "Title": _header_text(title),
               "Tags": _NTFY_TAGS.get(kind, "robot"), "Priority": priority or _NTFY_PRIORITY.get(kind, "default")}
    return _truncate(body or title, _LIMITS["ntfy"]).encode("utf-8"), headers


def desktop_command(platform: str, program: str, title: str, body: str) -> list[str]:
    """The argv that shows a desktop notification (``program``: the resolved notify-send or osascript)."""
    if platform == "darwin":
        # The texts travel as arguments of the script's run handler, not inside its source: no AppleScript
        # quoting to get wrong, whatever quotes or backslashes a description holds.
        return [program, "-e", "on run argv", "-e",
                "display notification (item 2 of argv) with title (item 1 of argv)", "-e", "end run", title, body]
    return [program, "--app-name=autoresearch", title, body]


def find_desktop_notifier(platform: str | None = None) -> tuple[str, str] | None:
    """(platform, program path) of this machine's desktop notifier, or None where there is none."""
    platform = platform or sys.platform
    name = "osascript" if platform == "darwin" else "notify-send" if platform.startswith("linux") else None
    path = shutil.which(name) if name else None
    return (platform, path) if path else None


# ----------------------------------------------------------------------------------------------------
# delivery


class _Retry(Exception):
    pass


def _reason(err: BaseException) -> str:
    """A short, URL-free description of why a request failed."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code}"
    if isinstance(err, urllib.error.URLError):
        err = err.reason if isinstance(err.reason, BaseException) else err
    if isinstance(err, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, ConnectionResetError):
        return "connection reset"
    if isinstance(err, socket.gaierror):
        return "host not found"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class Notifier:
    """Sends notifications without blocking the caller. Thread-safe; failures are logged, never raised.

    ``log`` gets one line per failure (and a line at start when a desktop notifier is asked for but none
    exists). Titles are prefixed with ``autoresearch <run_tag>:``.
    """

    def __init__(self, settings: NotifySettings, run_tag: str = "", log: Callable[[str], Any] = print, *,
                 platform: str | None = None, retry_delay: float = 1.0, max_pending: int = 64) -> None:
        self.settings = settings
        self.run_tag = run_tag
        self._log = log
        self.retry_delay = retry_delay
        self.platform = platform or sys.platform
        self._queue: queue.Queue[tuple[str, str, str, str | None] | None] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._desktop: tuple[str, str] | None = None
        if settings.desktop:
            self._desktop = find_desktop_notifier(self.platform)
            if self._desktop is None:
                which = {"darwin": "osascript"}.get(self.platform, "notify-send" if self.platform.startswith("linux") else "")
                self._say(f"notify: no desktop notifier here ({which + ' is not on PATH' if which else self.platform}); "
                          "desktop notifications are skipped")

    @property
    def enabled(self) -> bool:
        return bool(self.settings.url) or self._desktop is not None

    def _say(self, line: str) -> None:
        try:
            self._log(line)
        except Exception:  # a broken log must not break the notifier either
            pass

    def title(self, title: str) -> str:
        prefix = f"autoresearch {self.run_tag}" if self.run_tag else "autoresearch"
        return f"{prefix}: {title}"

    def send(self, kind: str, title: str, body: str, *, priority: str | None = None) -> bool:
        """Queue a notification of ``kind`` (one of :data:`EVENTS`, honoured against ``events``); False when
        nothing was queued (not wanted, nothing configured, closed, or too many pending)."""
        if self._closed or not self.enabled or not self.settings.wants(kind):
            return False
        self._ensure_thread()
        try:
            self._queue.put_nowait((kind, self.title(title), body, priority))
        except queue.Full:
            self._say(f"notify: too many notifications pending; dropped one ({kind}: {title})")
            return False
        return True

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="autoresearch-notify", daemon=True)
                self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self.deliver(*item)
            except Exception as e:  # pragma: no cover - deliver catches what it expects; this is the last guard
                self._say(f"notify: unexpected error: {type(e).__name__}")

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking notifications and wait up to ``timeout`` seconds (default: one attempt's timeout plus a
        little) for the pending ones. True when everything queued was delivered or given up on."""
        self._closed = True
        thread = self._thread
        if thread is None:
            return True
        if timeout is None:
            timeout = self.settings.timeout + 2.0
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(None, timeout=max(0.0, timeout))
        except queue.Full:
            pass
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            pending = self._queue.qsize()
            self._say(f"notify: gave up waiting after {timeout:.0f}s; {pending or 'a'} notification(s) may not have been "
                      "delivered")
            return False
        return True

    # -- synchronous delivery (the worker thread's side) ----------------------------------------------

    def deliver(self, kind: str, title: str, body: str, priority: str | None = None) -> None:
        """Post and show one notification now (blocking; failures logged). ``title`` is used as given."""
        if self.settings.url:
            self._post_webhook(kind, title, body, priority)
        if self._desktop is not None:
            self._show_desktop(title, body)

    def _post_webhook(self, kind: str, title: str, body: str, priority: str | None) -> None:
        url = self.settings.url
        assert url
        fmt = self.settings.webhook_format or "ntfy"
        where = redact_url(url)
        data, headers = build_payload(fmt, kind, title, body, priority=priority)
        headers = {"User-Agent": "autoresearch-notify", **headers}
        handlers = [urllib.request.ProxyHandler({})] if on_this_machine(url) else []  # never via a proxy to localhost
        opener = urllib.request.build_opener(*handlers)
        for attempt in (1, 2):
            try:
                self._post_once(opener, url, data, headers)
                return
            except _Retry as e:
                cause = e.__cause__ or e
                if attempt == 1:
                    time.sleep(self.retry_delay)
                    continue
                self._say(f"notify: the webhook at {where} failed: {_reason(cause)}, twice ({kind} not delivered)")
            except Exception as e:
                self._say(f"notify: the webhook at {where} failed: {_reason(e)} ({kind} not delivered)")
                return

    def _post_once(self, opener: urllib.request.OpenerDirector, url: str, data: bytes, headers: dict[str, str]) -> None:
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with opener.open(request, timeout=self.settings.timeout) as response:
                response.read(65536)
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, OSError) and not isinstance(reason, (socket.timeout, TimeoutError)):
                raise _Retry() from e  # refused, reset, unreachable, DNS: worth one more try
            raise
        except (ConnectionError, socket.gaierror) as e:  # e.g. the server closed the connection without a reply
            raise _Retry() from e

    def _show_desktop(self, title: str, body: str) -> None:
        assert self._desktop is not None
        platform, program = self._desktop
        argv = desktop_command(platform, program, title, _truncate(body, 1000))
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=self.settings.timeout)
        except (OSError, subprocess.SubprocessError) as e:
            self._say(f"notify: {Path(program).name} failed: {type(e).__name__}: {e}")
            return
        if done.returncode != 0:
            said = (done.stderr or done.stdout or "").strip().splitlines()
            self._say(f"notify: {Path(program).name} failed (exit {done.returncode})" + (f": {said[0][:200]}" if said else ""))


# ----------------------------------------------------------------------------------------------------
# deciding what is worth telling


@dataclass(frozen=True)
class Notice:
    """A decision to tell: ``kind`` (one of :data:`EVENTS`), a title (without the run prefix) and a body."""

    kind: str
    title: str
    body: str
    priority: str | None = None  # ntfy priority, when not the kind's own


def _bpb(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "?"


def _delta(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "?"
    return f"{value:+.4f}" if abs(value) >= 0.0005 else f"{value:+.6f}"


def _minutes_text(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class NotifyWatcher:
    """Turns ledger events into notices (pure state machine) and hands them to a :class:`Notifier`.

    A stall is the engine's own watchdog's ledger fact (engine.stall): a ``stalled`` event becomes the notice.
    """

    def __init__(self, notifier: Notifier | None, settings: NotifySettings | None = None) -> None:
        self.notifier = notifier
        self.settings = settings or (notifier.settings if notifier is not None else NotifySettings())
        self._lock = threading.RLock()  # observe is called from whichever thread appends (the stall watchdog's too)
        self._kinds: dict[int, str] = {}
        self._descriptions: dict[int, str] = {}
        self._baseline: float | None = None
        self._best: tuple[int, float] | None = None
        self._failures: list[tuple[int, str, str]] = []
        self._streak_told = False
        self._disk_episode = False
        self._disk_reason = ""
        self._phase: tuple[str, int | None, str] | None = None

    # -- the pure part ---------------------------------------------------------------------------------

    def prime(self, events: Iterable[dict[str, Any]]) -> None:
        """Read a run's history (a resumed run) without telling anything: descriptions, the baseline, the best,
        a crash streak already told."""
        with self._lock:
            for event in events:
                self.decide(event)
            self._phase = None
            self._disk_episode = False

    def decide(self, event: Mapping[str, Any]) -> list[Notice]:
        """Update the state with one ledger event (a dict as the ledger stores it); the notices it calls for."""
        with self._lock:
            return self._decide(event)

    def _decide(self, ev: Mapping[str, Any]) -> list[Notice]:
        kind = ev.get("event")
        index = ev.get("index") if isinstance(ev.get("index"), int) else None
        if kind == "run_started":
            self._phase = None
            self._disk_episode = False
        elif kind == "experiment_started" and index is not None:
            self._kinds[index] = str(ev.get("kind") or "agent")
            self._descriptions[index] = str(ev.get("description") or "")
        elif kind == "experiment_repaired" and index is not None:
            if ev.get("description"):
                self._descriptions[index] = str(ev["description"])
        elif kind == "decision" and index is not None:
            return self._decision(ev, index)
        elif kind == "paused":
            reason = str(ev.get("reason") or "")
            if reason.startswith("disk"):
                self._disk_reason = reason
        elif kind == "resumed":
            self._disk_episode = False
        elif kind == "phase":
            return self._on_phase(ev, index)
        elif kind == "stalled":
            return [self._stalled(ev, index)]
        elif kind == "stopped":
            self._phase = ("stopped", None, "")
            return [self._stopped(str(ev.get("reason") or ""))]
        return []

    def _decision(self, ev: Mapping[str, Any], index: int) -> list[Notice]:
        status = ev.get("status")
        exp_kind = self._kinds.get(index, "baseline" if index == 0 else "agent")
        val = ev.get("val_bpb")
        if status == "keep":
            self._failures.clear()
            self._streak_told = False
            if isinstance(val, (int, float)):
                self._best = (index, float(val))
            if exp_kind == "baseline":
                self._baseline = float(val) if isinstance(val, (int, float)) else None
                return []
            if exp_kind == "revert":  # the user's own doing: nothing to tell
                return []
            line = f"exp {index} kept: val_bpb {_bpb(val)} ({_delta(ev.get('delta'))})"
            desc = self._descriptions.get(index, "")
            body = line + (f"\n{desc}" if desc else "")
            if self._baseline is not None and isinstance(val, (int, float)):
                body += f"\n{_delta(val - self._baseline)} since the baseline ({_bpb(self._baseline)})"
            return [Notice("new_best", f"new best, exp {index}", body)]
        if status == "discard":
            self._failures.clear()
            self._streak_told = False
            return []
        if status in _FAILED and exp_kind != "revert":
            self._failures.append((index, str(status), str(ev.get("reason") or "")))
            n = self.settings.crash_streak
            if len(self._failures) >= n and not self._streak_told:
                self._streak_told = True
                lines = []
                for i, st, reason in self._failures[-n:]:
                    desc = self._descriptions.get(i, "")
                    reason = " ".join(reason.split())
                    lines.append(_truncate(f"exp {i} {st}: {desc}" + (f" ({reason})" if reason else ""), 300))
                return [Notice("crash_streak", f"{len(self._failures)} failed experiments in a row", "\n".join(lines))]
        return []

    def _on_phase(self, ev: Mapping[str, Any], index: int | None) -> list[Notice]:
        phase = str(ev.get("phase") or "")
        self._phase = (phase, index, str(ev.get("detail") or ""))
        if phase != "waiting_for_disk":
            self._disk_episode = False
            return []
        if self._disk_episode:
            return []
        self._disk_episode = True
        detail = str(ev.get("detail") or "")
        body = self._disk_reason or (f"{detail}" if detail else "below the disk floor")
        self._disk_reason = ""
        return [Notice("disk_floor", "paused: the disk is nearly full",
                       f"{body}. Free some space; the run continues by itself.")]

    def _stopped(self, reason: str) -> Notice:
        error = reason.startswith("error")
        lines = [reason or "stopped"]
        if self._best is not None:
            i, val = self._best
            best = f"best val_bpb {_bpb(val)} (exp {i}" + (", the baseline)" if self._kinds.get(i) == "baseline" else ")")
            if self._baseline is not None and self._kinds.get(i) != "baseline":
                best += f", {_delta(val - self._baseline)} since the baseline"
            lines.append(best)
        return Notice("stopped", "stopped on an error" if error else "stopped", "\n".join(lines),
                      priority="high" if error else None)

    def _stalled(self, ev: Mapping[str, Any], index: int | None) -> Notice:
        seconds = ev.get("seconds")
        doing = doing_words(str(ev.get("phase") or ""), index, str(ev.get("detail") or ""),
                            self._descriptions.get(index, "") if index is not None else "")
        took = _minutes_text(float(seconds)) if isinstance(seconds, (int, float)) else "a long time"
        return Notice("stall", "no progress", f"no experiment or training finished for {took}; the engine is {doing}. "
                                              "Check the engine log.")

    # -- the telling part -----------------------------------------------------------------------------

    def _tell(self, notices: Iterable[Notice]) -> None:
        if self.notifier is None:
            return
        for n in notices:
            self.notifier.send(n.kind, n.title, n.body, priority=n.priority)

    def observe(self, event: Mapping[str, Any]) -> None:
        """A ledger observer: decide on one event and send what it calls for (never raises)."""
        try:
            self._tell(self.decide(event))
        except Exception:  # pragma: no cover - a notifier must never break the engine
            pass

    __call__ = observe

    def close(self, timeout: float | None = None) -> bool:
        """Let the notifier deliver what is pending (e.g. the "stopped" notice)."""
        return self.notifier.close(timeout) if self.notifier is not None else True


def attach(ledger: Any, settings: NotifySettings | None, run_tag: str, log: Callable[[str], Any]) -> NotifyWatcher | None:
    """Notifications for an engine's ledger: a notifier and a watcher primed with the run's history, added to
    ``ledger.observers``. None when ``[notify]`` asks for nothing. Call :meth:`NotifyWatcher.close` before the
    engine exits."""
    if settings is None or not settings.enabled:
        return None
    notifier = Notifier(settings, run_tag, log)
    if not notifier.enabled:
        return None  # desktop only, and no desktop notifier here (already said)
    watcher = NotifyWatcher(notifier, settings)
    watcher.prime(ledger.events())
    ledger.observers.append(watcher.observe)
    return watcher
