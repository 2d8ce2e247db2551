"""Confinement of a reader process: what a child that reads untrusted mail may do and cost.

Consumes: the limits a reader process is started with. Produces: a confined process (this
one: ``confine`` is called by the child itself, before it reads any mail). Touches: this
process's rlimits, its ``no_new_privs`` bit and, where the kernel has Landlock, the files it
may open. Linux only; elsewhere ``confine`` applies the rlimits it can and says what it could
not.

What a confined reader gets:
- ``no_new_privs``: nothing it runs (LibreOffice included) gains privileges through setuid
  or file capabilities.
- rlimits: address space ``memory_bytes`` (soft; a ``MemoryError`` where Python allocates,
  a failed allocation elsewhere), up to ``ceiling_bytes`` (hard) for LibreOffice, which
  ``gateway.convert.office`` caps itself; no core files; files written at most
  ``FILE_BYTES``; CPU time bounded per mail (``cpu_budget``: SIGXCPU ends the process).
- Landlock: reading only under ``readable`` (the Python installation, the package, the
  system's libraries, fonts and LibreOffice), writing only under ``writable`` (its own
  empty temporary directory). The gateway's configuration file, its database, its
  Maildir and audit log are none of these, so a reader taken over by a hostile mail still
  cannot read a secret. The environment and the user id are the parent's to set
  (``gateway.smtp.reading``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Final

FILE_BYTES: Final = 512 * 1024 * 1024  # largest file a reader (or its LibreOffice) may write
_PR_SET_NO_NEW_PRIVS: Final = 38

# Landlock: syscall numbers (the same on every Linux architecture), rule type, access rights.
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION: Final = 1
_RULE_PATH_BENEATH: Final = 1
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_REMOVE_FILE, _MAKE_SOCK = 1 << 5, 1 << 9
_TRUNCATE, _IOCTL_DEV = 1 << 14, 1 << 15
_FILE_RIGHTS: Final = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_RIGHTS_BY_ABI: Final = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1}  # 5+: ioctl too
_READ: Final = _EXECUTE | _READ_FILE | _READ_DIR

# What a reader and LibreOffice read besides the Python installation and the package.
SYSTEM_READABLE: Final = (
    "/usr",
    "/lib",
    "/lib64",
    "/bin",
    "/sbin",
    "/opt/libreoffice",
    "/etc/fonts",
    "/etc/libreoffice",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/locale.alias",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/mime.types",
    "/var/cache/fontconfig",
    "/var/lib/libreoffice",
    "/var/spool/libreoffice",
    "/proc",
    "/sys/devices/system/cpu",
    "/dev/urandom",
    "/dev/random",
)
SYSTEM_WRITABLE: Final = ("/dev/null", "/dev/shm")
# LibreOffice binds its single-instance socket in /tmp whatever TMPDIR says (and removes it).
_SOCKETS: Final = ("/tmp", _MAKE_SOCK | _REMOVE_FILE)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def confine(
    *, memory_bytes: int, ceiling_bytes: int, readable: Iterable[str], writable: Iterable[str]
) -> list[str]:
    """Confine this process for good; returns what could not be applied, in words (empty:
    everything held). Call it once, before the first untrusted byte is read."""
    missing: list[str] = []
    libc = _libc()
    if libc is None or libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        missing.append("no_new_privs")
    ceiling = max(memory_bytes, ceiling_bytes)
    for name, limit in (
        ("RLIMIT_AS", (memory_bytes, ceiling)),
        ("RLIMIT_CORE", (0, 0)),
        ("RLIMIT_FSIZE", (FILE_BYTES, FILE_BYTES)),
    ):
        try:
            resource.setrlimit(getattr(resource, name), limit)
        except (AttributeError, ValueError, OSError):
            missing.append(name)
    if libc is None or not _landlock(libc, list(readable), list(writable)):
        missing.append("landlock")
    return missing


def cpu_budget(seconds: float) -> None:
    """From now on this process may use ``seconds`` more of CPU time (SIGXCPU after)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def cpu_unbounded() -> None:
    """Lift ``cpu_budget`` (between mails, while the process waits)."""
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))


def resident_bytes() -> int:
    """This process's resident memory now (0 where /proc does not tell)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def python_readable() -> list[str]:
    """The Python installation and the package's own directory: what the reader imports."""
    package = Path(__file__).resolve().parents[1]  # gateway/
    places = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, str(package)}
    for entry in sys.path:  # site-packages and the standard library, not a source checkout
        if entry and Path(entry).is_dir() and not package.is_relative_to(Path(entry).resolve()):
            places.add(entry)
    return sorted(places)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    libc.syscall.restype = ctypes.c_long
    return libc


def _landlock(libc: ctypes.CDLL, readable: list[str], writable: list[str]) -> bool:
    """Restrict this process's file access to ``readable`` and ``writable``; False when the
    kernel has no Landlock (or refuses it)."""
    abi = libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    if abi < 1:
        return False
    handled = _RIGHTS_BY_ABI.get(abi, (1 << 16) - 1)
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0)
    if ruleset < 0:
        return False
    try:
        for paths, rights in ((readable, _READ), (writable, handled)):
            for path in paths:
                _allow(libc, int(ruleset), path, rights & handled)
        _allow(libc, int(ruleset), _SOCKETS[0], _SOCKETS[1] & handled)
        return bool(libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) == 0)
    finally:
        os.close(int(ruleset))


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, rights: int) -> None:
    """One path beneath which ``rights`` hold; a path that does not exist is skipped."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        attr = _PathBeneathAttr(rights, fd)
        libc.syscall(
            _ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(attr), 0
        )
    finally:
        os.close(fd)
