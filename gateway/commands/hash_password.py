"""``fax-gateway hash-password``: make a password hash for a ``[[users]]`` or ``[[admins]]`` entry.

Reads the password twice without echo from the terminal, or once (the first line)
from standard input when it is not a terminal, and prints the scrypt hash to paste
into ``password_hash``. The password itself is never printed or logged. Needs no
configuration. Exit status 0, or 2 when the passwords differ or are too short.
"""

from __future__ import annotations

import getpass
import sys
from typing import TextIO

from gateway.core.passwords import hash_password

MIN_LENGTH = 8


def hash_password_command(stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            print("fax-gateway: the two passwords differ; nothing was made", file=sys.stderr)
            return 2
    else:
        password = stdin.readline().rstrip("\r\n")
    if len(password) < MIN_LENGTH:
        print(f"fax-gateway: a password needs at least {MIN_LENGTH} characters", file=sys.stderr)
        return 2
    print(hash_password(password), file=stdout)
    if stdout.isatty():
        print('put it in a [[users]] entry: password_hash = "<the line above>"', file=sys.stderr)
    return 0
