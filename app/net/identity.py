"""Who this device is: an EC P-256 key, a self-signed certificate, and the device ID.

The device ID is a fingerprint of the certificate (see docs/architecture.md,
"Identity"), so nobody hands out IDs and nobody can claim one without the key.

Startup speed matters (the CLI loads the identity on every run), so reading an
existing identity uses only the standard library; `cryptography` is imported
lazily, only to create a certificate, to sign, or to verify.

Several processes may start at once on an empty config dir (`run` and `status` typed
together): the pair is created once, under the config dir's lock, and every process
uses what the first one wrote (see app/core/configdir.py). Read-only commands use
`load`, which never creates anything.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core import configdir
from app.core.configdir import ConfigDirError

KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"
CERT_CN = "p2psync"
CERT_YEARS = 20
ID_GROUPS = 5
ID_GROUP_LEN = 7


@dataclass(frozen=True)
class Identity:
    device_id: str
    cert_der: bytes
    cert_path: Path  # PEM
    key_path: Path  # PEM, PKCS8, mode 0600
    # the loaded private key, cached on first sign (kept out of eq/hash/repr)
    _key: Any = field(default=None, init=False, repr=False, compare=False)

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 signature of `data` with the device key.

        The handshake uses it to prove the client owns the certificate it claims
        (TLS already proves that for the server).
        """
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return self._private_key().sign(data, ec.ECDSA(hashes.SHA256()))

    def load_key(self) -> None:
        """Load the key and the signing code now, in a worker thread: a first handshake
        would otherwise import them on the event loop (190 ms while a scan ran)."""
        from cryptography.hazmat.primitives import hashes  # noqa: F401
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: F401

        self._private_key()

    def _private_key(self) -> Any:
        """Load the key on first use only: most runs never sign anything.

        A key that is damaged, or not the certificate's (a key.pem copied from another
        config dir), is one line for the user (it was a traceback at every start), and
        says how to make a new identity."""
        if self._key is None:
            key = _load_key(self.key_path, self.cert_der)
            object.__setattr__(self, "_key", key)  # frozen dataclass: cache by hand
        return self._key


def _load_key(key_path: Path, cert_der: bytes) -> Any:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    new_identity = (f"; to give this device a new identity (a new device ID), remove "
                    f"{KEY_FILE} and {CERT_FILE} from {key_path.parent}")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as e:
        raise ConfigDirError(f"cannot read {key_path}: {e.strerror or e}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigDirError(f"{key_path} is not a usable private key{new_identity}") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        cert_key = x509.load_der_x509_certificate(cert_der).public_key().public_bytes(*spki)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigDirError(f"{key_path.parent / CERT_FILE} is not a usable certificate"
                             f"{new_identity}") from None
    if key.public_key().public_bytes(*spki) != cert_key:
        raise ConfigDirError(f"{key_path} is not the key of {CERT_FILE} beside it"
                             f"{new_identity}")
    return key


def device_id_from_der(der: bytes) -> str:
    """The device ID of a certificate: its SHA-256, base32, first 35 chars in groups of 7.

    Derived from the certificate alone so any peer can recompute and check it.
    """
    digest = base64.b32encode(hashlib.sha256(der).digest()).decode("ascii").rstrip("=").upper()
    chars = digest[: ID_GROUPS * ID_GROUP_LEN]
    return "-".join(chars[i : i + ID_GROUP_LEN] for i in range(0, len(chars), ID_GROUP_LEN))


def short_id(device_id: str) -> str:
    """The first group of a device ID: enough to name a device in conflict copies."""
    return device_id[:ID_GROUP_LEN]


def load(config_dir: Path) -> Identity | None:
    """The identity stored in `config_dir`, or None when there is none yet (never creates).

    For read-only commands (`status`): they must not make a device identity as a side
    effect. Only a complete pair counts: the key is looked at before the certificate,
    and creation renames the certificate into place last, so a certificate seen here
    always belongs to the key at `key_path`.
    """
    key_path, cert_path = Path(config_dir) / KEY_FILE, Path(config_dir) / CERT_FILE
    if not key_path.is_file():
        return None
    try:
        cert_pem = cert_path.read_bytes()
    except FileNotFoundError:
        return None  # a key without a certificate: a creation in progress, or a crash
    except OSError as e:
        raise ConfigDirError(f"cannot read {cert_path}: {e.strerror or e}") from None
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ConfigDirError(
            f"{cert_path} is not a PEM certificate; to give this device a new identity "
            f"(a new device ID), remove {KEY_FILE} and {CERT_FILE} from {config_dir}"
        ) from None
    return Identity(device_id_from_der(der), der, cert_path, key_path)


def load_or_create(config_dir: Path) -> Identity:
    """The identity stored in `config_dir`, created there (key + cert) on first use.

    Reusing the files keeps the device ID stable across runs, which is what peers
    remember us by. Loading an existing identity takes no lock and needs no
    `cryptography` (fast CLI startup). Creating takes the config dir's lock and looks
    again inside it, so processes starting together on an empty config dir all end
    up with the one identity the first of them wrote.
    """
    found = load(config_dir)
    if found is not None:
        return found
    with configdir.locked(config_dir):
        found = load(config_dir)  # made by another process while we waited
        if found is None:
            _create_key_and_cert(Path(config_dir) / KEY_FILE, Path(config_dir) / CERT_FILE)
            found = load(config_dir)
    if found is None:  # only if something removes the files as we write them
        raise ConfigDirError(f"the new key and certificate in {config_dir} vanished; "
                             "is another program cleaning that directory?")
    return found


def _create_key_and_cert(key_path: Path, cert_path: Path) -> None:
    """Write a new EC P-256 key (mode 0600) and a self-signed certificate for it.

    Called under the config dir's lock only. Both are written to fsynced temp files
    first, then renamed: the key first, the certificate last. A crash in between
    leaves a key without a certificate, which `load` does not count and the next
    creation replaces; a leftover certificate without its key is removed first, so
    no reader ever pairs it with the new key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = _self_signed_cert(key).public_bytes(serialization.Encoding.PEM)
    try:
        key_tmp = configdir.write_temp(key_path, key_pem, 0o600)
        try:
            cert_tmp = configdir.write_temp(cert_path, cert_pem, 0o644)
        except BaseException:
            key_tmp.unlink(missing_ok=True)
            raise
        try:
            cert_path.unlink(missing_ok=True)
            os.replace(key_tmp, key_path)
            os.replace(cert_tmp, cert_path)
        finally:
            key_tmp.unlink(missing_ok=True)
            cert_tmp.unlink(missing_ok=True)
        configdir.sync_dir(key_path.parent)
    except OSError as e:
        raise ConfigDirError(f"cannot write this device's key and certificate in "
                             f"{key_path.parent}: {e.strerror or e}") from None


def _self_signed_cert(key: Any) -> Any:
    """A certificate nobody validates as a chain: it only carries the public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CERT_CN)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # tolerate skewed clocks
        .not_valid_after(now + datetime.timedelta(days=365 * CERT_YEARS + 5))
        .sign(key, hashes.SHA256())
    )


def verify_signature(cert_der: bytes, signature: bytes, data: bytes) -> bool:
    """True when `signature` over `data` was made by the key of the EC P-256 `cert_der`.

    Inputs come from peers, so anything malformed is simply False, never an error.
    """
    if not all(isinstance(x, bytes) for x in (cert_der, signature, data)):
        return False
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        public_key = x509.load_der_x509_certificate(cert_der).public_key()
        if not (
            isinstance(public_key, ec.EllipticCurvePublicKey)
            and isinstance(public_key.curve, ec.SECP256R1)
        ):
            return False
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except Exception:
        return False
    return True


def server_context(identity: Identity) -> ssl.SSLContext:
    """TLS 1.3 server side presenting our certificate; clients prove themselves later.

    No client certificate is requested: the handshake's signature covers that.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(identity.cert_path, identity.key_path)
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(identity: Identity) -> ssl.SSLContext:
    """TLS 1.3 client that accepts any server certificate.

    Self-signed certificates cannot be checked against a CA; instead the handshake
    binds the TLS certificate to the device ID the server announces, and the caller
    decides whether that device is one it trusts.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
