import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.settings import ConfigError, Settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_defaults_are_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.fax_domain == "fax.local"
    assert s.mailboxes == []
    assert s.efax.simulated
    assert s.allowed_countries == frozenset({"US"})


def test_environment_beats_toml_and_flags_beat_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[efax]\napp_id = "from-toml"\n[smtp]\nlisten = "127.0.0.1:2000"\n')
    monkeypatch.setenv("FAXGW_EFAX__APP_ID", "from-env")
    monkeypatch.setenv("FAXGW_SMTP__LISTEN", "127.0.0.1:3000")
    s = load_settings(path, {"smtp": {"listen": "127.0.0.1:4000"}})
    assert s.efax.app_id == "from-env"
    assert s.smtp.listen == "127.0.0.1:4000"


def test_toml_is_read_from_faxgw_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'fax_domain = "Fax.Example.ORG"\n[[mailboxes]]\nuser_id = "u"\nfax_number = "1"\n')
    monkeypatch.setenv("FAXGW_CONFIG", str(path))
    s = load_settings()
    assert s.fax_domain == "fax.example.org"
    assert s.mailboxes[0].senders == []


def test_secret_from_file_and_never_in_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret-key-value\n")
    monkeypatch.setenv("FAXGW_EFAX__API_KEY_FILE", str(secret))
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.efax.api_key.get_secret_value() == "s3cret-key-value"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[smtp]\nlisten = "nonsense"\n', "smtp.listen"),
        ("[inbound]\npoll_interval_s = 5\n", "inbound.poll_interval_s"),
        ('default_country = "XX"\n', "default_country"),
        ('[efax]\nbase_url = "ftp://x"\n', "efax.base_url"),
        ("[smtp]\nlisten_port = 25\n", "smtp.listen_port"),
        ('[relay]\ntls = "maybe"\n', "relay.tls"),
    ],
)
def test_a_bad_value_is_named(tmp_path: Path, toml: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml))
    assert f"configuration key {key}:" in str(info.value)


def test_bad_secret_is_not_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXGW_SMTP__MAX_MESSAGE_BYTES", "topsecretvalue")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "topsecretvalue" not in str(info.value)
    assert "smtp.max_message_bytes" in str(info.value)


def test_missing_config_file_is_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_example_configuration_names_every_setting_and_loads(tmp_path: Path) -> None:
    """config/gateway.example.toml documents every key; uncommented, it is a valid file."""
    import re
    import tomllib

    from gateway.settings import Settings

    example = Path(__file__).parents[2] / "config" / "gateway.example.toml"
    text = example.read_text()
    load_settings(example)
    uncommented = re.sub(r"^# (\[\[(?:mailboxes|users|admins)\]\]|\w+ = .*)$", r"\1", text, flags=re.M)
    data = tomllib.loads(uncommented)
    for name, field in Settings.model_fields.items():
        if name == "mailboxes":
            from gateway.settings import Mailbox

            assert set(data["mailboxes"][0]) == set(Mailbox.model_fields)
        elif name == "users":
            from gateway.settings import User

            assert set(data["users"][0]) == set(User.model_fields)
        elif name == "admins":
            from gateway.settings import Admin

            assert set(data["admins"][0]) == set(Admin.model_fields)
        elif hasattr(field.annotation, "model_fields"):
            current = {
                key
                for key, f in field.annotation.model_fields.items()  # type: ignore[union-attr]
                if "deprecated" not in (f.description or "")
            }
            assert set(data[name]) == current, name
        else:
            assert name in data, name


def _models(model: type[BaseModel], path: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    yield path or model.__name__, model
    for name, field in model.model_fields.items():
        for candidate in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                yield from _models(candidate, f"{path}{name}.")


def test_every_setting_has_a_description_and_every_duration_its_unit() -> None:
    missing, unitless = [], []
    for path, model in _models(Settings):
        for name, field in model.model_fields.items():
            if not (field.description or "").strip():
                missing.append(f"{path}{name}")
            if float in (field.annotation, *typing.get_args(field.annotation)) and not (
                name.endswith(("_s", "_h", "_days")) or "seconds" in (field.description or "")
            ):
                unitless.append(f"{path}{name}")
    assert missing == [], f"settings without a description: {missing}"
    assert unitless == [], f"float settings without a unit in the name: {unitless}"


def test_the_worker_keys_once_under_dispatch_still_work_and_are_named_as_deprecated(
    tmp_path: Path,
) -> None:
    old = load_settings(write(tmp_path, "[dispatch]\nlease_s = 60\npoll_idle_s = 0.5\nworkers = 2\n"))
    assert (old.workers.lease_s, old.workers.poll_idle_s, old.dispatch.workers) == (60, 0.5, 2)
    assert old.workers.heartbeat_s == 5  # the default: not set under either name
    assert [d.split(" ")[0] for d in old.deprecations()] == ["dispatch.lease_s", "dispatch.poll_idle_s"]
    assert "is now workers.lease_s" in old.deprecations()[0]

    both = load_settings(write(tmp_path, "[dispatch]\nlease_s = 60\n[workers]\nlease_s = 45\n"))
    assert both.workers.lease_s == 45  # the new name wins
    new = load_settings(write(tmp_path, "[workers]\nlease_s = 45\nmax_crashes = 5\n"))
    assert (new.workers.lease_s, new.workers.max_crashes, new.deprecations()) == (45, 5, [])


def test_the_old_worker_keys_come_from_the_environment_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAXGW_DISPATCH__BACKOFF_MAX_S", "120")
    s = load_settings(write(tmp_path, ""))
    assert s.workers.backoff_max_s == 120 and s.deprecations()[0].startswith("dispatch.backoff_max_s")


def test_a_heartbeat_too_slow_for_its_lease_is_named_under_workers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "[workers]\nlease_s = 10\nheartbeat_s = 5\n"))
    assert "configuration key workers:" in str(info.value) and "heartbeat_s" in str(info.value)
