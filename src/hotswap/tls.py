"""TLS for nodes and clients (the standard library's ``ssl``), and a small certificate
authority to try it with.

A node started with ``--tls-cert FILE --tls-key FILE`` speaks the protocol inside TLS (1.2 or
later); with ``--tls-ca FILE`` it also requires every client to present a certificate signed by
that authority (mutual TLS). A client certificate then names its principal by its subject's
common name: with ``--auth``, a principal added by ``hotswap token add NAME --roles ROLES
--certificate`` authenticates by a certificate whose common name is NAME, without a token.

Clients verify the node's certificate against ``tls_ca`` (or the system's authorities when
none is given) and check that it names the host they connect to. The environment variables
``HOTSWAP_TLS_CA``, ``HOTSWAP_TLS_CERT`` and ``HOTSWAP_TLS_KEY`` give the defaults of every
client, the CLI's included; ``HOTSWAP_TLS=1`` asks for TLS with the system's authorities.

``hotswap tls-init`` writes an authority, a node certificate and client certificates for a
first deployment or a test (:func:`write_authority`); a production deployment may use its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from hotswap.errors import HotswapError

__all__ = [
    "TlsProblem",
    "chosen_context",
    "client_context",
    "default_client_context",
    "peer_name",
    "server_context",
    "write_authority",
]


class TlsProblem(HotswapError):
    """A certificate, key or authority that cannot be used, and why."""


def _load_chain(context: ssl.SSLContext, cert: Path | str, key: Path | str, who: str) -> None:
    cert, key = Path(cert), Path(key)  # a str path works as it does for the authority
    for path in (cert, key):
        if not path.is_file():
            raise TlsProblem(f"{who}: cannot read {path}: no such file")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as e:
        msg = f"{who}: {cert} and {key} are not a PEM certificate and its private key: {e}"
        raise TlsProblem(msg) from None
    except OSError as e:
        raise TlsProblem(f"{who}: cannot read {cert} or {key}: {e.strerror or e}") from None


def _load_ca(context: ssl.SSLContext, ca: Path | str, who: str) -> None:
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as e:
        raise TlsProblem(f"{who}: {ca} holds no PEM certificate of an authority: {e}") from None
    except OSError as e:
        raise TlsProblem(f"{who}: cannot read the authority {ca}: {e.strerror or e}") from None


def server_context(
    cert: Path | str, key: Path | str, ca: Path | str | None = None
) -> ssl.SSLContext:
    """A node's TLS context: its certificate and key; with ``ca``, clients must present a
    certificate that authority signed (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, cert, key, "--tls-cert/--tls-key")
    if ca is not None:
        _load_ca(context, ca, "--tls-ca")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    ca: Path | str | None = None, cert: Path | str | None = None, key: Path | str | None = None
) -> ssl.SSLContext:
    """A client's TLS context: the node's certificate is checked against ``ca`` (else the
    system's authorities) and must name the host connected to; ``cert`` and ``key``: this
    client's certificate, for a node that requires one."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        _load_ca(context, ca, "the authority (--tls-ca, $HOTSWAP_TLS_CA, tls_ca)")
    if (cert is None) != (key is None):
        raise TlsProblem(
            "a client certificate needs its key: give both --tls-cert and --tls-key "
            "($HOTSWAP_TLS_CERT and $HOTSWAP_TLS_KEY; client_context(ca, cert, key))"
        )
    if cert is not None and key is not None:
        _load_chain(context, cert, key, "the client certificate (--tls-cert, --tls-key)")
    return context


def default_client_context(
    ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext | None:
    """The TLS context the environment asks for (``HOTSWAP_TLS_CA``, ``HOTSWAP_TLS_CERT``,
    ``HOTSWAP_TLS_KEY``, ``HOTSWAP_TLS=1``), each file given here in place of its variable
    (the CLI's ``--tls-ca`` and the others), or None: plain TCP."""
    files = [
        g if g else Path(e) if (e := os.environ.get(f"HOTSWAP_TLS_{n}")) else None
        for g, n in zip((ca, cert, key), ("CA", "CERT", "KEY"), strict=True)
    ]
    if not any(files) and os.environ.get("HOTSWAP_TLS") != "1":
        return None
    return client_context(*files)


def chosen_context(tls: ssl.SSLContext | bool | None) -> ssl.SSLContext | None:
    """A client's ``tls`` argument as a context: None, the environment's choice
    (:func:`default_client_context`); False, plain TCP; True, TLS checked against the
    system's authorities; or the context given."""
    if tls is None:
        return default_client_context()
    if tls is False:
        return None
    if tls is True:
        return client_context()
    return tls


def peer_name(peercert: object) -> str | None:
    """The subject common name of a verified client certificate (``ssl``'s ``getpeercert()``
    form), or None: no certificate, or none with exactly one common name."""
    if not isinstance(peercert, dict):
        return None
    names = [
        value
        for rdn in peercert.get("subject", ())
        for attribute, value in rdn
        if attribute == "commonName"
    ]
    return names[0] if len(names) == 1 and isinstance(names[0], str) else None


# --- a small authority: `hotswap tls-init` ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Written:
    """What :func:`write_authority` wrote."""

    ca: Path
    node_cert: Path
    node_key: Path
    clients: tuple[tuple[str, Path, Path], ...]


def write_authority(out: Path, hosts: list[str], clients: list[str], days: int = 825) -> Written:
    """Write to ``out``: ``ca.pem`` and ``ca.key`` (an authority), ``node.pem`` and
    ``node.key`` (a node certificate naming ``hosts``: DNS names or IP addresses), and for each
    client name ``NAME.pem`` and ``NAME.key`` (common name NAME). Keys are written mode 0600;
    existing files are never replaced."""
    from cryptography import x509  # noqa: PLC0415 - only this command makes certificates
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    if not hosts:
        raise TlsProblem("name at least one host the node is reached at (--host)")
    for name in clients:
        if not name or not name.isprintable() or "/" in name or len(name) > 64:
            raise TlsProblem(f"bad client name {name!r}: 1 to 64 printable characters, no '/'")
    names = ["ca", "node", *clients]
    if len(set(names)) != len(names):
        raise TlsProblem("client names must differ from each other and from 'ca' and 'node'")
    files = [out / f"{n}.{ext}" for n in names for ext in ("pem", "key")]
    taken = [str(f) for f in files if f.exists()]
    if taken:
        raise TlsProblem(f"{', '.join(taken)} exist: choose another --out, or remove them")
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    def subject(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(subject("hotswap authority"))
        .issuer_name(subject("hotswap authority"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def issue(
        common: str, alt: list[x509.GeneralName] | None, usage: x509.ObjectIdentifier
    ) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject(common))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if alt:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key

    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    write_key(ca_key, out / "ca.key")
    (out / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pem, key = issue(hosts[0], alt, ExtendedKeyUsageOID.SERVER_AUTH)
    write_key(key, out / "node.key")
    (out / "node.pem").write_bytes(pem)
    made = []
    for name in clients:
        pem, key = issue(name, None, ExtendedKeyUsageOID.CLIENT_AUTH)
        write_key(key, out / f"{name}.key")
        (out / f"{name}.pem").write_bytes(pem)
        made.append((name, out / f"{name}.pem", out / f"{name}.key"))
    return Written(out / "ca.pem", out / "node.pem", out / "node.key", tuple(made))
