"""Device identity: stable across runs, the documented ID format, signatures, TLS contexts."""

from __future__ import annotations

import datetime
import re
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.net.identity import (
    Identity,
    client_context,
    device_id_from_der,
    load_or_create,
    server_context,
    short_id,
    verify_signature,
)

ID_RE = re.compile(r"^[A-Z2-7]{7}(-[A-Z2-7]{7}){4}$")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ident(tmp_path: Path) -> Identity:
    return load_or_create(tmp_path / "cfg")


def test_created_files_and_modes(tmp_path: Path) -> None:
    cfg = tmp_path / "a" / "cfg"
    ident = load_or_create(cfg)
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o700
    assert ident.key_path == cfg / "key.pem" and ident.cert_path == cfg / "cert.pem"
    assert stat.S_IMODE(ident.key_path.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in ident.key_path.read_bytes()  # PKCS8
    assert ssl.PEM_cert_to_DER_cert(ident.cert_path.read_text()) == ident.cert_der
    assert sorted(p.name for p in cfg.iterdir()) == ["cert.pem", "key.pem"]  # no temp files


def test_stable_across_loads(tmp_path: Path) -> None:
    first = load_or_create(tmp_path)
    key_pem = first.key_path.read_bytes()
    second = load_or_create(tmp_path)
    assert second == first
    assert second.key_path.read_bytes() == key_pem


def test_different_devices_differ(tmp_path: Path) -> None:
    assert load_or_create(tmp_path / "a").device_id != load_or_create(tmp_path / "b").device_id


def test_id_format(ident: Identity) -> None:
    assert ID_RE.match(ident.device_id)
    assert ident.device_id == device_id_from_der(ident.cert_der)
    assert short_id(ident.device_id) == ident.device_id[:7] == ident.device_id.split("-")[0]


def test_id_known_vector() -> None:
    # sha256(b"abc") = ba7816bf..., base32 "XJ4BNP4P..."
    assert device_id_from_der(b"abc") == "XJ4BNP4-PAHH6UQ-KBIDPF3-LRCEOYA-GYNDSYL"


def test_certificate_contents(ident: Identity) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(ident.cert_der)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "p2psync"
    assert isinstance(cert.public_key().curve, ec.SECP256R1)
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert lifetime > datetime.timedelta(days=365 * 20 - 2)


def test_sign_and_verify(ident: Identity, tmp_path: Path) -> None:
    sig = ident.sign(b"transcript")
    assert verify_signature(ident.cert_der, sig, b"transcript")
    assert ident.sign(b"again")  # cached key reused
    assert not verify_signature(ident.cert_der, sig, b"transcript!")
    other = load_or_create(tmp_path / "other")
    assert not verify_signature(other.cert_der, sig, b"transcript")


@pytest.mark.parametrize(
    "cert, sig, data",
    [
        (b"not a cert", b"sig", b"data"),
        (None, b"sig", b"data"),
        ("text", b"sig", b"data"),
        ("CERT", b"\x30\x00", b"data"),
        ("CERT", None, b"data"),
        ("CERT", b"", b"data"),
        ("CERT", "SIG", None),
    ],
)
def test_verify_never_raises(ident: Identity, cert, sig, data) -> None:
    cert = ident.cert_der if cert == "CERT" else cert
    sig = ident.sign(b"data") if sig == "SIG" else sig
    assert verify_signature(cert, sig, data) is False


def test_loading_does_not_import_cryptography(ident: Identity) -> None:
    code = (
        "import sys; from pathlib import Path; import app.net.framing, app.net.handshake;"
        "from app.net.identity import load_or_create as l;"
        f"i = l(Path({str(ident.cert_path.parent)!r})); print(i.device_id);"
        "assert not [m for m in sys.modules if m.startswith(('cryptography', 'spake2'))]"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ident.device_id


def test_tls_contexts(ident: Identity) -> None:
    server, client = server_context(ident), client_context(ident)
    assert server.minimum_version == client.minimum_version == ssl.TLSVersion.TLSv1_3
    assert server.verify_mode == ssl.CERT_NONE  # no client certificate requested
    assert client.check_hostname is False and client.verify_mode == ssl.CERT_NONE

