"""Run ``fax-gateway`` as a real subprocess: ``serve`` for crash and shutdown tests, the
one-shot commands (``command``) for what they print."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_LISTEN = re.compile(r"SMTP listening on [\d.]+:(\d+)")


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def command(config: Path, *args: str, timeout: float = 60) -> tuple[int, str]:
    """``python -m gateway.cli ARGS --config CONFIG`` in the config's directory, with no
    ``FAXGW_*`` of this process; its exit status and its output with lines unwrapped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAXGW_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *args,
        "--config",
        str(config),
        cwd=config.parent,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return await proc.wait(), " ".join(out.decode().split())


class GatewayProcess:
    """``with GatewayProcess(config) as gw: gw.smtp_port``; always stopped on exit."""

    def __init__(self, config: Path, *, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FAXGW_")}
        self.env.update(env or {})
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.smtp_port = 0
        self._ready = threading.Event()

    def start(self, timeout: float = 30) -> GatewayProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config)],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout):
            self.kill()
            raise AssertionError("serve did not start:\n" + "".join(self.lines))
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            match = _LISTEN.search(line)
            if match:
                self.smtp_port = int(match.group(1))
                self._ready.set()

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close()

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close()
        return code

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self._reader.join(5)
            self.proc.stdout.close()

    def output(self) -> str:
        return "".join(self.lines)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")
