"""The loopback certificate helper: what it writes, and that its contexts verify each other
over a real TLS handshake (and refuse a certificate made elsewhere)."""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
import trio
import trio.testing
from cryptography import x509

from recorder.testing.tls import LOOPBACK, SelfSignedCertificate


def test_the_certificate_names_the_loopback_address_and_its_key_is_private(
    tmp_path: Path,
) -> None:
    made = SelfSignedCertificate.create(tmp_path / "tls")
    cert = x509.load_pem_x509_certificate(made.cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(LOOPBACK)]
    assert cert.issuer == cert.subject
    assert cert.not_valid_before_utc < cert.not_valid_after_utc
    assert stat.S_IMODE(made.key_file.stat().st_mode) == 0o600


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str | None:
    client_end, server_end = trio.testing.memory_stream_pair()
    client_tls = trio.SSLStream(client_end, client, server_hostname=LOOPBACK)
    server_tls = trio.SSLStream(server_end, server, server_side=True)

    async def serve() -> None:
        # A refusing client hangs up mid-handshake: the server's side of that is not tested.
        with contextlib.suppress(trio.BrokenResourceError):
            await server_tls.do_handshake()

    failure: trio.BrokenResourceError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        try:
            await client_tls.do_handshake()
        except trio.BrokenResourceError as exc:
            failure = exc  # raised outside the nursery: not inside an exception group
            await client_end.aclose()  # the server waits for bytes a failed client never sends
    if failure is not None:
        raise failure
    return client_tls.version()


async def test_the_client_context_trusts_exactly_this_certificate(tmp_path: Path) -> None:
    made = SelfSignedCertificate.create(tmp_path / "one")
    other = SelfSignedCertificate.create(tmp_path / "two")
    with trio.fail_after(10):
        version = await _handshake(made.server_context(), made.client_context())
        assert version is not None
        assert version.startswith("TLSv1.")
        with pytest.raises(trio.BrokenResourceError) as refused:
            await _handshake(made.server_context(), other.client_context())
    assert isinstance(refused.value.__cause__, ssl.SSLCertVerificationError)
