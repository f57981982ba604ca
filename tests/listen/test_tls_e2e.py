"""--tls-cert-file and --tls-key-file: the listener serves HTTPS itself."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path
from typing import Any

import trustme

from tests.listen.conftest import AUTH, Konnect, free_port


def certificate_files(tmp_path: Path) -> tuple[trustme.CA, Path, Path]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server.private_key_pem.write_to_path(str(key))
    server.cert_chain_pems[0].write_to_path(str(cert))
    for extra in server.cert_chain_pems[1:]:
        with cert.open("ab") as handle:
            handle.write(extra.bytes())
    return ca, cert, key


def test_https_listener_accepts_deliveries_from_konnect_and_clients(
    konnect: Konnect, start_listener: Any, tmp_path: Path
) -> None:
    ca, cert, key = certificate_files(tmp_path)
    port = free_port()
    endpoint = f"https://127.0.0.1:{port}/audit-logs"
    listener = start_listener(
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--endpoint",
        endpoint,
        "--skip-ssl-verification",
        port=port,
    )
    listener.wait_ready()
    delivered = konnect.deliver(3)
    assert delivered["status"] == 202

    context = ssl.create_default_context()
    ca.configure_trust(context)
    request = urllib.request.Request(
        endpoint, data=b'{"name":"direct"}\n', method="POST", headers={"Authorization": AUTH}
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as answer:
        assert answer.status == 202

    stored = (listener.store / "events.jsonl").read_text().splitlines()
    assert stored == [*delivered["records"], '{"name":"direct"}']
    assert listener.stop() == 0


def test_a_certificate_without_its_key_is_a_usage_error(
    start_listener: Any, tmp_path: Path
) -> None:
    _ca, cert, _key = certificate_files(tmp_path)
    listener = start_listener("--tls-cert-file", str(cert))
    assert listener.process.wait(timeout=30) == 2
    assert "--tls-cert-file and --tls-key-file must be given together" in listener.stderr


def test_a_key_that_does_not_match_fails_before_konnect_is_touched(
    konnect: Konnect, start_listener: Any, tmp_path: Path
) -> None:
    _ca, cert, _key = certificate_files(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _ca2, _cert2, wrong_key = certificate_files(other)
    listener = start_listener("--tls-cert-file", str(cert), "--tls-key-file", str(wrong_key))
    assert listener.process.wait(timeout=30) == 1
    assert "cannot load the TLS certificate or key" in listener.stderr
    assert konnect.requests("POST", "/v3/audit-log-destinations") == []
