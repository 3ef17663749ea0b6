"""Device identity: stable across runs, the documented ID format, signatures, TLS contexts."""

from __future__ import annotations

import datetime
import os
import re
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.core.configdir import ConfigDirError
from app.net.identity import (
    Identity,
    client_context,
    device_id_from_der,
    load,
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
    # no temp files; .lock is the config dir's lock file, owner-only like the rest
    assert sorted(p.name for p in cfg.iterdir()) == [".lock", "cert.pem", "key.pem"]
    assert stat.S_IMODE((cfg / ".lock").stat().st_mode) == 0o600


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



# --- several processes on one config dir (issue #9) ---------------------------------------
def _key_matches_cert(ident: Identity) -> bool:
    fresh = load(ident.cert_path.parent)  # a new object: the key is read from disk again
    return fresh is not None and verify_signature(ident.cert_der, fresh.sign(b"x"), b"x")


def test_load_never_creates(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    assert load(cfg) is None
    assert not cfg.exists()
    cfg.mkdir()
    assert load(cfg) is None
    assert list(cfg.iterdir()) == []
    made = load_or_create(cfg)
    assert load(cfg) == made


def test_threads_creating_at_once_get_one_identity(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    start = threading.Barrier(8)
    ids: list[str] = []

    def create() -> None:
        start.wait()
        ids.append(load_or_create(cfg).device_id)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    ident = load(cfg)
    assert ident is not None and ident.device_id == ids[0] and _key_matches_cert(ident)
    assert sorted(p.name for p in cfg.iterdir()) == [".lock", "cert.pem", "key.pem"]


def test_processes_creating_at_once_get_one_identity(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    go = time.time() + 1.5  # every process is up by then: they all start creating together
    code = (
        "import sys, time; from pathlib import Path;"
        "from app.net.identity import load_or_create;"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()));"
        "print(load_or_create(Path(sys.argv[1])).device_id)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(cfg), str(go)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    ids = {out.strip() for out, _ in outs}
    ident = load(cfg)
    assert ident is not None and ids == {ident.device_id}
    assert _key_matches_cert(ident)
    assert sorted(p.name for p in cfg.iterdir()) == [".lock", "cert.pem", "key.pem"]


def test_key_without_certificate_is_replaced(tmp_path: Path) -> None:
    """A crash between the key's rename and the certificate's leaves a key alone."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "key.pem").write_bytes(b"a key whose certificate never made it")
    assert load(cfg) is None  # not an identity: status says none yet
    ident = load_or_create(cfg)
    assert (cfg / "key.pem").read_bytes() != b"a key whose certificate never made it"
    assert _key_matches_cert(ident)
    assert stat.S_IMODE(ident.key_path.stat().st_mode) == 0o600
    assert load_or_create(cfg) == ident


def test_certificate_without_key_is_replaced(tmp_path: Path) -> None:
    """A certificate is no identity without its key (someone removed key.pem)."""
    cfg = tmp_path / "cfg"
    old = load_or_create(cfg)
    old.key_path.unlink()
    assert load(cfg) is None
    ident = load_or_create(cfg)
    assert ident.device_id != old.device_id
    assert _key_matches_cert(ident)


def test_damaged_certificate_is_one_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    load_or_create(cfg)
    (cfg / "cert.pem").write_text("not a certificate")
    with pytest.raises(ConfigDirError, match=r"cert\.pem is not a PEM certificate.*remove"):
        load_or_create(cfg)
    assert (cfg / "cert.pem").read_text() == "not a certificate"  # never replaced silently


def test_config_dir_made_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        ident = load_or_create(tmp_path / "deep" / "cfg")
    finally:
        os.umask(old)
    assert stat.S_IMODE(ident.cert_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(ident.key_path.stat().st_mode) == 0o600


def test_config_dir_that_cannot_be_made_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigDirError, match="cannot create the config dir"):
        load_or_create(tmp_path / "file" / "cfg")
