"""Whether a URL's host is this machine: a model served here competes with the training (agent.llm), and a
webhook here is never reached through a proxy (engine.notify)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


def on_this_machine(url: str) -> bool:
    """``url``'s host is localhost, a loopback address, 0.0.0.0 or this host's name (a bare host:port too)."""
    host = (urlsplit(url if "://" in url else "http://" + url).hostname or "").lower()
    if host in ("", "localhost", "localhost.localdomain", "0.0.0.0", socket.gethostname().lower()):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.endswith(".localhost")
