"""The listener process under load meets SIGKILL, SIGTERM, a full disk and a read-only store.

Concurrent senders post batches to a real ``kongctl listen --configure-webhook=false`` and
note every answer. Afterwards the record file is audited against that ledger: each
acknowledged batch is stored exactly once, whole and in order, and no line is part of a batch
that was cut short.

SIGKILL keeps the page cache, so a kill cannot prove that an fsync happened; these tests prove
the ordering the receiver promises (stored, then acknowledged) and the repair at the next
start. The fsync itself is pinned by the store's own tests.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import (
    Figures,
    Konnect,
    LaunchListener,
    Ledger,
    ListenerProcess,
    Load,
    Sender,
    audit_record_file,
    make_batch,
    read_response,
    request_bytes,
    wait_for,
)


def load_figures(soak: bool) -> tuple[int, int]:
    """(senders, acknowledged batches to wait for before the signal)."""
    return (16, 3000) if soak else (8, 200)


def test_sigkill_under_load_loses_no_acknowledged_batch_and_the_torn_tail_is_repaired(
    konnect: Konnect, launch_listener: LaunchListener, figures: Figures, soak: bool
) -> None:
    senders, batches = load_figures(soak)
    ledger = Ledger()
    rounds = 5 if soak else 1
    for round_number in range(rounds):
        listener = launch_listener("--log-level", "warn").wait_ready()
        load = Load(listener.port, ledger, senders=senders, prefix=f"r{round_number}s").start()
        load.wait_for_acknowledged(len(ledger.acknowledged) + batches)
        listener.process.kill()
        listener.process.wait(10)
        load.finish()
        # What a power cut in the middle of a write leaves: a line without its end.
        with listener.events.open("ab") as events:
            events.write(make_batch("torn", 1)[0][:25])

    listener = launch_listener("--log-level", "warn").wait_ready()
    assert listener.log_file.read_text().count("event store torn last line dropped") == rounds
    after = Sender(listener.port, ledger, "after-restart")
    assert after.send(0) == 202
    after.close()
    assert listener.stop() == 0

    audit = audit_record_file(listener.events.read_bytes(), ledger)
    assert audit.lost_records == 0
    figures.record(
        "SIGKILL under load, then restart",
        f"{senders} concurrent senders, 10 records a batch, killed after >= {batches}"
        f" acknowledged batches ({rounds} round(s)); a torn line appended before each restart",
        "every acknowledged record stored once; torn tail cut; appends resume on a clean line",
        **audit.counts(),
    )


def test_sigterm_under_load_finishes_batches_in_flight_and_stores_none_by_halves(
    konnect: Konnect, launch_listener: LaunchListener, figures: Figures, soak: bool
) -> None:
    senders, batches = load_figures(soak)
    ledger = Ledger()
    listener = launch_listener().wait_ready()
    port = listener.port

    # One delivery is mid-body when the signal comes; the drain must wait for it.
    straggler = make_batch("straggler", 5)
    raw = request_bytes(b"\n".join(straggler) + b"\n")
    ledger.sent("straggler", straggler)
    slow = socket.create_connection(("127.0.0.1", port), timeout=15)
    slow.sendall(raw[:-20])

    load = Load(port, ledger, senders=senders).start()
    load.wait_for_acknowledged(batches)
    listener.process.send_signal(signal.SIGTERM)
    # Only once the listener has stopped accepting does the straggler send the rest.
    wait_for(lambda: refuses_connections(port), 10)
    slow.sendall(raw[-20:])
    ledger.answered("straggler", read_response(slow)[0])
    slow.close()
    assert listener.process.wait(30) == 0, listener.stderr
    load.finish()

    assert ledger.answers["straggler"] == 202
    assert konnect.state()["destinations"] == []
    audit = audit_record_file(listener.events.read_bytes(), ledger)
    assert audit.lost_records == 0
    # Every request that reached the listener before the signal got its answer.
    assert audit.unacknowledged_stored_batches == 0
    figures.record(
        "SIGTERM under load",
        f"{senders} concurrent senders plus one delivery mid-body at the signal;"
        f" signal after >= {batches} acknowledged batches",
        "in-flight batches finished and acknowledged; later ones refused; none half-stored;"
        " exit 0, Konnect cleaned up",
        **audit.counts(),
    )


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


# A full disk, for real: a tiny tmpfs mounted on the store directory.


@contextlib.contextmanager
def tiny_filesystem(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(filesystem: Path, leave: int) -> Path:
    """Take all but ``leave`` bytes of the file system's free space."""
    stats = os.statvfs(filesystem)
    free = stats.f_bavail * stats.f_frsize
    filler = filesystem / "filler"
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, free - leave))
    return filler


def post_concurrently(port: int, ledger: Ledger, prefix: str, count: int) -> None:
    def send(number: int) -> None:
        sender = Sender(port, ledger, f"{prefix}{number}")
        for index in range(count):
            sender.send(index, records=8)
        sender.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


def test_a_full_disk_answers_500_stores_no_partial_line_and_recovers(
    konnect: Konnect,
    config_home: Path,
    launch_listener: LaunchListener,
    figures: Figures,
) -> None:
    store = config_home / "audit-logs" / "default"
    with tiny_filesystem(store, "1m"):
        listener = launch_listener().wait_ready()
        port = listener.port
        ledger = Ledger()
        filler = fill(store, leave=16 * 1024)

        post_concurrently(port, ledger, "full-", 20)
        refused = [b for b, status in ledger.answers.items() if status == 500]
        assert refused, "the disk never filled up"
        assert set(ledger.answers.values()) <= {202, 500}
        audit = audit_record_file(listener.events.read_bytes(), ledger)
        assert audit.unacknowledged_stored_batches == 0

        filler.unlink()
        after = Sender(port, ledger, "after-space")
        assert after.send(0) == 202
        after.close()
        assert listener.stop() == 0
        audit = audit_record_file(listener.events.read_bytes(), ledger)

    assert audit.lost_records == 0
    assert audit.unacknowledged_stored_batches == 0
    figures.record(
        "disk full (1 MiB tmpfs)",
        f"4 concurrent senders, 80 batches of 8 records into 16 KiB of free space;"
        f" {len(refused)} batches answered 500; then space freed",
        "500 for what did not fit, no partial line, 202 again once space returned",
        **audit.counts(),
    )


def test_a_file_size_limit_answers_500_and_recovers_when_lifted(
    konnect: Konnect, launch_listener: LaunchListener, figures: Figures
) -> None:
    # Works without root: RLIMIT_FSIZE on the running listener, lifted again with prlimit.
    listener = launch_listener().wait_ready()
    pid, port = listener.process.pid, listener.port
    ledger = Ledger()
    size = listener.events.stat().st_size
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (size + 8 * 1024, hard))

    post_concurrently(port, ledger, "limited-", 8)
    refused = sum(1 for status in ledger.answers.values() if status == 500)
    assert refused
    assert listener.process.poll() is None, "SIGXFSZ killed the listener"

    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
    after = Sender(port, ledger, "lifted")
    assert after.send(0) == 202
    after.close()
    assert listener.stop() == 0
    audit = audit_record_file(listener.events.read_bytes(), ledger)
    assert audit.lost_records == 0
    assert audit.unacknowledged_stored_batches == 0
    figures.record(
        "file size limit (RLIMIT_FSIZE)",
        f"limit set 8 KiB above the file; 4 senders x 8 batches; {refused} answered 500;"
        " then lifted",
        "500 and no partial line while limited, no SIGXFSZ death, 202 once lifted",
        **audit.counts(),
    )


def test_a_read_only_store_stops_startup_before_konnect_is_touched(
    konnect: Konnect, config_home: Path, launch_listener: LaunchListener, figures: Figures
) -> None:
    store = config_home / "audit-logs" / "default"
    with tiny_filesystem(store, "64k"):
        (store / "events.jsonl").write_bytes(b'{"kept":true}\n')
        remounted = subprocess.run(
            ["mount", "-o", "remount,ro", str(store)], capture_output=True, text=True
        )
        assert remounted.returncode == 0, remounted.stderr
        listener: ListenerProcess = launch_listener()
        assert listener.process.wait(20) == 1
        assert (store / "events.jsonl").read_bytes() == b'{"kept":true}\n'

    stderr = listener.stderr
    assert stderr.startswith("Error: cannot open event store ")
    assert "Read-only file system" in stderr
    assert "Hint: the file system is read-only" in stderr
    assert "Traceback" not in stderr
    assert konnect.state()["requests"] == []
    figures.record(
        "read-only store",
        "the store directory is a read-only mount at start",
        "exit 1 naming the file and the cause; Konnect never called; the file untouched",
    )
