"""Password hashes (scrypt) and the hash-password command."""

from __future__ import annotations

import io
from typing import TypedDict

import pytest

from gateway.commands.hash_password import hash_password_command
from gateway.core.passwords import BadPasswordHash, hash_password, parse_hash, verify_password
from gateway.settings import ConfigError, load_settings


class Cost(TypedDict):
    n: int
    r: int
    p: int


FAST: Cost = {"n": 1024, "r": 8, "p": 1}  # cheap parameters: these tests are about the format


def test_a_hash_is_self_describing_and_verifies() -> None:
    encoded = hash_password("correct horse", **FAST)
    assert encoded.startswith("scrypt$n=1024,r=8,p=1$")
    assert "correct horse" not in encoded
    assert verify_password("correct horse", encoded)
    assert verify_password(b"correct horse", encoded)
    assert not verify_password("correct hors", encoded)
    assert not verify_password("", encoded)


def test_the_same_password_gets_a_new_salt_each_time() -> None:
    assert hash_password("pw-pw-pw-pw", **FAST) != hash_password("pw-pw-pw-pw", **FAST)


def test_default_cost_is_the_documented_one() -> None:
    parsed = parse_hash(hash_password("x" * 12))
    assert (parsed.n, parsed.r, parsed.p, len(parsed.salt), len(parsed.key)) == (16384, 8, 1, 16, 32)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plain-text-password",
        "bcrypt$2b$12$abc",
        "scrypt$n=1000,r=8,p=1$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5a2V5",  # n not a power of 2
        "scrypt$n=1048576,r=64,p=16$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5a2V5",  # memory bomb
        "scrypt$n=1024,r=8,p=1$not base64!$a2V5",
        "scrypt$n=1024,r=8$c2FsdHNhbHQ=$a2V5a2V5a2V5a2V5a2V5a2V5",
    ],
)
def test_malformed_hashes_never_verify_and_are_named_without_echo(bad: str) -> None:
    assert not verify_password("anything", bad)
    with pytest.raises(BadPasswordHash) as info:
        parse_hash(bad)
    if bad:
        assert bad not in str(info.value)


def test_a_bad_hash_in_the_configuration_is_a_config_error_without_the_value() -> None:
    users = [{"name": "alice", "password_hash": "hunter2-not-a-hash", "mailboxes": []}]
    with pytest.raises(ConfigError) as info:
        load_settings(None, {"users": users})
    assert "users.0.password_hash" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_a_user_bound_to_an_unknown_mailbox_is_a_config_error() -> None:
    users = [
        {"name": "alice", "password_hash": hash_password("pw-pw-pw-pw", **FAST), "mailboxes": ["15550001"]}
    ]
    with pytest.raises(ConfigError, match="15550001 is not the fax_number of any"):
        load_settings(None, {"users": users})


def test_the_hash_is_a_secret_in_the_settings() -> None:
    encoded = hash_password("pw-pw-pw-pw", **FAST)
    mailbox = {"user_id": "u", "fax_number": "+1 (323) 555-0100"}
    settings = load_settings(
        None,
        {
            "mailboxes": [mailbox],
            "users": [{"name": "a", "password_hash": encoded, "mailboxes": ["13235550100"]}],
        },
    )
    assert encoded not in repr(settings) and encoded not in str(settings.model_dump())


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_hash_password_reads_stdin_when_it_is_not_a_terminal() -> None:
    out = _Pipe()
    assert hash_password_command(stdin=_Pipe("s3cret-enough\n"), stdout=out) == 0
    line = out.getvalue().strip()
    assert line.startswith("scrypt$") and "s3cret" not in line
    assert verify_password("s3cret-enough", line)


def test_hash_password_refuses_a_short_password(capsys: pytest.CaptureFixture[str]) -> None:
    out = _Pipe()
    assert hash_password_command(stdin=_Pipe("short\n"), stdout=out) == 2
    assert out.getvalue() == ""
    assert "at least 8 characters" in capsys.readouterr().err


def test_hash_password_asks_twice_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(_Pipe):
        def isatty(self) -> bool:
            return True

    answers = iter(["first-password", "second-password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    out = _Pipe()
    assert hash_password_command(stdin=Tty(), stdout=out) == 2
    assert out.getvalue() == ""
    answers = iter(["same-password", "same-password"])
    assert hash_password_command(stdin=Tty(), stdout=out) == 0
    assert verify_password("same-password", out.getvalue().strip())
