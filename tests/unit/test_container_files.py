"""The Dockerfile and compose.yaml, read as text (no Docker engine here): the image's
entrypoint, ports, volume and environment agree with the README's table, the command
line and the settings; the compose file runs PostgreSQL and two gateways on it, each with
a volume of its own."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import build_parser
from gateway.settings import Settings, load_settings, split_host_port

ROOT = Path(__file__).parents[2]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    assert not pending, "a continued line at the end of the Dockerfile"
    out = []
    for line in lines:
        word, _, rest = line.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def instruction(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(x, str) for x in value), args
    return value


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instruction("ENV"):
        for pair in shlex.split(args):
            key, sep, value = pair.partition("=")
            assert sep, f"ENV {pair}: use KEY=value"
            env[key] = value
    return env


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def readme_table() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## In a container", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w[\w ]*?) \| (.+?) \|$", section, flags=re.M)
    return {what: value for what, value in rows if what != "what"}


def test_the_entrypoint_is_the_command_line_and_the_default_command_serves() -> None:
    (entrypoint,) = [exec_form(a) for a in instruction("ENTRYPOINT")]
    (cmd,) = [exec_form(a) for a in instruction("CMD")]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == [f"/app/.venv/bin/{next(iter(scripts))}"] and "fax-gateway" in scripts
    assert instruction("WORKDIR") == ["/app"]
    build_parser().parse_args(cmd)  # a command the CLI knows
    assert cmd == ["serve"]
    table = readme_table()
    assert table["entrypoint"] == f"`fax-gateway` (`{entrypoint[0]}`)"
    assert table["default command"] == f"`{cmd[0]}`"


def test_exposed_ports_are_the_listeners_the_image_configures_and_the_readme_names() -> None:
    env = image_env()
    assert all(key.startswith("FAXGW_") for key in env)
    exposed = sorted(int(p) for args in instruction("EXPOSE") for p in args.split())
    smtp = split_host_port(env["FAXGW_SMTP__LISTEN"])
    http = split_host_port(env["FAXGW_HTTP__LISTEN"])
    assert smtp[0] == http[0] == "0.0.0.0"  # reachable from outside the container
    assert exposed == sorted([smtp[1], http[1]])
    table = readme_table()
    assert table["SMTP"].startswith(
        f"container port {smtp[1]} (`FAXGW_SMTP__LISTEN={env['FAXGW_SMTP__LISTEN']}`)"
    )
    assert table["HTTP"].startswith(
        f"container port {http[1]} (`FAXGW_HTTP__LISTEN={env['FAXGW_HTTP__LISTEN']}`"
    )
    (health,) = instruction("HEALTHCHECK")
    assert f"http://127.0.0.1:{http[1]}/healthz" in health


def test_the_image_environment_is_valid_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in image_env().items():
        monkeypatch.setenv(key, value)
    settings = load_settings(None, {})
    assert isinstance(settings, Settings)
    assert settings.database.url == "sqlite:////data/gateway.db"
    assert str(settings.relay.maildir).startswith("/data")
    (volume,) = [exec_form(a) for a in instruction("VOLUME")]
    assert volume == ["/data"] and "`/data`" in readme_table()["data"]
    assert settings.smtp.trusted_networks == ["127.0.0.0/8", "::1/128"]  # loopback only, as the README says


def test_compose_runs_postgresql_and_two_gateways_each_with_a_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    data = compose()
    services = data["services"]
    assert set(services) == {"db", "gateway-a", "gateway-b"}
    assert str(services["db"]["image"]).startswith("postgres:")
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    env = image_env()
    container_ports = {
        split_host_port(env["FAXGW_SMTP__LISTEN"])[1],
        split_host_port(env["FAXGW_HTTP__LISTEN"])[1],
    }
    host_ports: list[str] = []
    volumes: list[str] = []
    for name in ("gateway-a", "gateway-b"):
        service = services[name]
        assert service["build"] == "."
        build_parser().parse_args(service["command"])  # serve --config ...
        config = service["command"][service["command"].index("--config") + 1]
        assert config == "/app/config/gateway.toml"
        assert any(v.endswith(":/app/config:ro") for v in service["volumes"])
        (data_volume,) = [v for v in service["volumes"] if v.endswith(":/data")]
        volumes.append(data_volume.split(":")[0])
        ports = [str(p) for p in service["ports"]]
        assert {int(p.split(":")[1]) for p in ports} == container_ports
        host_ports += [p.split(":")[0] for p in ports]
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
        assert "db_password" in service["secrets"]
        with monkeypatch.context() as m:
            for key, value in {**env, **service["environment"]}.items():
                m.setenv(key, str(value))
            # The secret exists only inside the container: any readable file stands in for it.
            m.setenv("FAXGW_DATABASE__PASSWORD_FILE", str(ROOT / "pyproject.toml"))
            settings = load_settings(None, {})
        assert settings.database.url == "postgresql://faxgw@db:5432/faxgw"
    assert len(set(volumes)) == 2 and set(volumes) <= set(data["volumes"])  # a volume each
    assert len(set(host_ports)) == len(host_ports)  # no host port twice
    assert "db_password" in data["secrets"]
