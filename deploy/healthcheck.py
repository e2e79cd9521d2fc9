"""Container health probe: exit 0 if the service in this container answers ``/health/ready``.

Standard library only; the image's HEALTHCHECK and docker-compose.yml run it. The URL is
``HEALTHCHECK_URL`` if set, else ``/health/ready`` on the port of the command the
container runs (``receivables serve SERVICE [--port N]``, read from PID 1's command line),
so one image is probed right whichever service it serves.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

DEFAULT_PORTS = {"ledger": 8001, "dunning": 8002, "credit": 8003}
CONSOLE_PORT = 8000  # the console and portal (no store; ready once it serves)


def url_for(command: Sequence[str], path: str = "/health/ready") -> str:
    """The loopback URL of ``path`` for a ``receivables serve SERVICE [--port N]`` command line."""
    ports = {**DEFAULT_PORTS, "console": CONSOLE_PORT}
    service = next((word for word in command if word in ports), "ledger")
    port: str | int = ports[service]
    for index, word in enumerate(command):
        if word == "--port" and index + 1 < len(command):
            port = command[index + 1]
        elif word.startswith("--port="):
            port = word.partition("=")[2]
    return f"http://127.0.0.1:{port}{path}"


def container_command() -> list[str]:
    """PID 1's arguments (the service itself, or an init such as tini in front of it)."""
    with open("/proc/1/cmdline", "rb") as file:
        return [word for word in file.read().decode(errors="replace").split("\0") if word]


def probe(url: str, timeout: float = 4.0) -> bool:
    """True if ``url`` answers 200; says why not on stderr otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:
        print(f"unhealthy: {url} answered {error.code}: {error.read(500).decode(errors='replace')}",
              file=sys.stderr)
    except (urllib.error.URLError, OSError) as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
    return False


def main() -> int:
    url = os.environ.get("HEALTHCHECK_URL") or url_for(container_command())
    return 0 if probe(url) else 1


if __name__ == "__main__":
    sys.exit(main())
