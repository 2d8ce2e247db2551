"""``fax-gateway serve`` for benchmarks: the same ``serve()``, plus a commit counter.

``python bench/_serve.py CONFIG.toml`` does what ``python -m gateway.cli serve --config
CONFIG.toml`` does (INFO logging to stderr, settings from the file, ``gateway.app.serve``)
and adds one thing: on SIGUSR1 it logs ``bench: store.commits=N``, the store's count of
physical commits so far, so a benchmark can tell commits per mail.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from gateway.app import Gateway, serve
from gateway.logs import setup_logging
from gateway.settings import load_settings


def main(config: Path) -> int:
    setup_logging("INFO")
    settings = load_settings(config)
    running: list[Gateway] = []

    def report(signum: int, frame: object) -> None:  # installed first: no start-up race
        store = running[0].store if running else None
        print(f"bench: store.commits={store.commits if store else 0}", file=sys.stderr, flush=True)

    async def started(gateway: Gateway) -> None:
        running.append(gateway)

    signal.signal(signal.SIGUSR1, report)
    return asyncio.run(serve(settings, started=started))


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
