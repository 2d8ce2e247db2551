"""Failed sign-ins across sessions, and refusals in aggregate: the rules, on a clock of our own."""

from __future__ import annotations

from gateway.smtp.refusals import RefusalDigest
from gateway.smtp.throttle import AuthThrottle, Throttled, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock) -> AuthThrottle:
    return AuthThrottle(delay_s=1, max_delay_s=4, lockout_failures=5, lockout_s=600, clock=clock)


def test_delays_double_up_to_the_cap_then_a_lockout_that_ends() -> None:
    clock = Clock()
    t = throttle(clock)
    delays, said = [], []
    for _ in range(5):
        delays.append(t.delay("203.0.113.7", "alice"))
        said += t.failed("203.0.113.7", "alice")
    assert delays == [0, 1, 2, 4, 4]
    assert said == [
        Throttled("address", "203.0.113.7", 1, None),
        Throttled("user", "alice", 1, None),
        Throttled("address", "203.0.113.7", 5, 600),
        Throttled("user", "alice", 5, 600),
    ]
    assert t.locked("203.0.113.7", "bob") == 600  # the address
    assert t.locked("198.51.100.1", "alice") == 600  # the name
    assert t.locked("198.51.100.1", "bob") is None
    clock.now += 601
    assert t.locked("203.0.113.7", "alice") is None and t.delay("203.0.113.7", "alice") == 0


def test_old_failures_are_forgotten_and_a_success_clears_only_the_address() -> None:
    clock = Clock()
    t = throttle(clock)
    t.failed("203.0.113.7", "alice")
    t.failed("203.0.113.7", "alice")
    t.succeeded("203.0.113.7")
    assert t.delay("203.0.113.7", "carol") == 0
    assert t.delay("198.51.100.1", "alice") == 2  # the name still counts its two failures
    clock.now += 601
    assert t.delay("198.51.100.1", "alice") == 0


def test_ipv6_clients_are_counted_by_their_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    t = throttle(Clock())
    t.failed("2001:db8:1:2::1", "x")
    assert t.delay("2001:db8:1:2::99", "y") == 1


def test_refusals_beyond_the_first_ten_a_minute_are_summarised_once() -> None:
    clock = Clock()
    digest = RefusalDigest(clock=clock)
    noted = [digest.note("203.0.113.7", "rcpt", "550") for _ in range(12)] + [
        digest.note("203.0.113.7", "mail", "530")
    ]
    assert noted == ["whole"] * 10 + ["counted first", "counted", "counted"]
    assert digest.note("198.51.100.1", "rcpt", "553") == "whole"  # another client has its own ten
    assert digest.due() == []  # the minute is not over
    clock.now += 61
    [summary] = digest.due()
    assert (summary.peer, summary.counts, summary.total) == ("203.0.113.7", {"rcpt 550": 2, "mail 530": 1}, 3)
    assert summary.text() == "rcpt 550 x2, mail 530 x1"
    assert digest.note("203.0.113.7", "rcpt", "550") == "whole"  # a new minute
    assert digest.due(everything=True) == []
