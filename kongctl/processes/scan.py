"""Finding kongctl listeners that have no process record (unmanaged listeners).

A listener started in the foreground, or by a kongctl that kept no records, is still a
process that holds the regional webhook. ``kongctl ps`` shows such processes so that the user
can find and stop them.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path

from kongctl.processes.registry import redact_args
from kongctl.processes.runtime import process_start_ticks, uses_procfs

LISTENER_VERBS = ("listen", "tail")
_DETACH_FLAGS = ("-d", "--detach")
# Interpreter options that take the next word as their value.
_PYTHON_OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")


class UnmanagedListener:
    """A running ``kongctl listen`` or ``kongctl tail`` without a process record."""

    # A plain class: a dataclass or NamedTuple costs `kongctl ps` a noticeable part of its
    # start-up time in imports and class creation.
    __slots__ = ("args", "pid", "start_time_ticks", "started_at", "verb")

    def __init__(
        self,
        pid: int,
        verb: str,
        args: list[str],
        start_time_ticks: int | None,
        started_at: datetime | None,
    ) -> None:
        self.pid = pid
        self.verb = verb
        self.args = args  # secrets redacted
        self.start_time_ticks = start_time_ticks
        self.started_at = started_at


def find_unmanaged_listeners(
    known_pids: Collection[int], config_dir: Path | None = None
) -> list[UnmanagedListener]:
    """Listeners running on this machine, except ``known_pids`` and the calling process.

    With ``config_dir``, only listeners that use that config directory (they write its
    store and records); a listener whose environment cannot be read is kept.
    """
    skip = {os.getpid(), *known_pids}
    found = []
    for pid, argv in _command_lines():
        if pid in skip:
            continue
        verb = listener_verb(argv)
        if verb is None:
            continue
        if config_dir is not None and not _uses_config_dir(pid, config_dir):
            continue
        ticks = process_start_ticks(pid)
        found.append(UnmanagedListener(pid, verb, redact_args(argv), ticks, _started_at(ticks)))
    return sorted(found, key=lambda listener: listener.pid)


def listener_verb(argv: Sequence[str]) -> str | None:
    """``listen`` or ``tail`` when ``argv`` runs a kongctl listener in the foreground."""
    rest = _kongctl_arguments(argv)
    if rest is None or any(arg in _DETACH_FLAGS or arg.startswith("--detach=") for arg in rest):
        return None  # a `--detach` parent lives only until its child is ready
    return next((arg for arg in rest if arg in LISTENER_VERBS), None)


def option_value(args: Sequence[str], flag: str) -> str | None:
    """The value given to ``flag`` in ``args``, in either ``--flag v`` or ``--flag=v`` form."""
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def _kongctl_arguments(argv: Sequence[str]) -> list[str] | None:
    """The arguments after the kongctl program name, or None if ``argv`` is not kongctl."""
    if not argv:
        return None
    program = os.path.basename(argv[0])
    if program == "kongctl":
        return list(argv[1:])
    if not program.startswith(("python", "pypy")):
        return None
    index = 1
    while index < len(argv):
        arg = argv[index]
        if arg == "-m":
            return list(argv[index + 2 :]) if argv[index + 1 : index + 2] == ["kongctl"] else None
        if arg.startswith("-m"):
            return list(argv[index + 1 :]) if arg == "-mkongctl" else None
        if arg == "-c":
            return None
        if arg in _PYTHON_OPTIONS_WITH_VALUE:
            index += 2
            continue
        if arg.startswith("-"):
            index += 1
            continue
        # The first plain word is the script: the kongctl console script, run by its shebang.
        return list(argv[index + 1 :]) if os.path.basename(arg) == "kongctl" else None
    return None


def _uses_config_dir(pid: int, config_dir: Path) -> bool:
    theirs = _config_dir_of(pid)
    return theirs is None or os.path.abspath(theirs) == os.path.abspath(config_dir)


def _config_dir_of(pid: int) -> str | None:
    """The config directory a process resolves from its environment, when it can be read."""
    if not uses_procfs():
        return None
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    environ = dict(entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    xdg = environ.get(b"XDG_CONFIG_HOME", b"").strip()
    if xdg:
        return os.path.join(os.fsdecode(xdg), "kongctl")
    home = environ.get(b"HOME")
    return os.path.join(os.fsdecode(home), ".config", "kongctl") if home else None


def _command_lines() -> list[tuple[int, list[str]]]:
    if uses_procfs():
        return _procfs_command_lines()
    return _ps_command_lines()


def _procfs_command_lines() -> list[tuple[int, list[str]]]:
    lines = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile, or hidden from us
        if raw:
            argv = raw.rstrip(b"\0").split(b"\0")
            lines.append((int(entry.name), [os.fsdecode(arg) for arg in argv]))
    return lines


def _ps_command_lines() -> list[tuple[int, list[str]]]:
    import subprocess  # only where there is no /proc

    try:
        result = subprocess.run(
            ["ps", "-axww", "-o", "pid=,command="],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        import logging  # only here: `kongctl ps` logs nothing otherwise

        logging.getLogger(__name__).debug("process scan failed error=%s", exc)
        return []
    lines = []
    for line in result.stdout.splitlines():
        pid, _, command = line.strip().partition(" ")
        if pid.isdigit():
            # LIMITATION: ps joins argv with spaces, so an argument containing a space is split
            # in two here; only the program name and the verb matter for the match.
            lines.append((int(pid), command.split()))
    return lines


def _started_at(ticks: int | None) -> datetime | None:
    if ticks is None:
        return None
    if not uses_procfs():
        return datetime.fromtimestamp(ticks, UTC)
    boot = _boot_time()
    if boot is None:
        return None
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def _boot_time() -> int | None:
    try:
        with open("/proc/stat", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None
