"""The admin page's sign-in throttle and form tokens, and its settings."""

from __future__ import annotations

import pytest

from gateway.core.passwords import hash_password
from gateway.http.admin.guard import LoginThrottle, new_token, token_ok
from gateway.settings import ConfigError, load_settings


def test_a_key_is_paused_after_its_failures_until_the_oldest_is_a_window_old() -> None:
    now = [1000.0]
    throttle = LoginThrottle(3, window_s=900, clock=lambda: now[0])
    keys = ["addr 203.0.113.7", "name olivia"]
    for _ in range(3):
        assert throttle.wait_s(keys) == 0
        throttle.failed(keys)
        now[0] += 10
    assert throttle.wait_s(keys) == pytest.approx(900 - 30)
    assert throttle.wait_s(["addr 198.51.100.1", "name olivia"]) > 0  # the name is paused too
    assert throttle.wait_s(["addr 198.51.100.1", "name sam"]) == 0
    now[0] = 1000 + 900.5  # the first failure is out of the window
    assert throttle.wait_s(keys) == 0
    throttle.succeeded(keys)
    assert throttle.wait_s(keys) == 0


def test_tokens_compare_only_equal_non_empty_strings() -> None:
    token = new_token()
    assert len(token) >= 40 and token_ok(token, token)
    assert not token_ok(token, token[:-1]) and not token_ok(token, None) and not token_ok("", "")
    assert not token_ok(None, token) and not token_ok(token, ["x"])


def test_admins_name_known_mailboxes_and_unique_names() -> None:
    hashed = hash_password("pw", n=1024)
    mailbox = {"user_id": "u1", "fax_number": "13235550100", "senders": ["a@example.com"]}
    ok = load_settings(None, {"mailboxes": [mailbox], "admins": [{"name": "o", "password_hash": hashed}]})
    assert ok.admins[0].mailboxes == [] and "scrypt" not in repr(ok.admins[0])
    with pytest.raises(ConfigError, match=r"admins\.0\.password_hash"):
        load_settings(None, {"admins": [{"name": "o", "password_hash": "plain"}]})
    with pytest.raises(ConfigError, match="not the fax_number of any"):
        load_settings(None, {"admins": [{"name": "o", "password_hash": hashed, "mailboxes": ["1999"]}]})
    with pytest.raises(ConfigError, match="used twice"):
        load_settings(None, {"admins": [{"name": "o", "password_hash": hashed}] * 2})
