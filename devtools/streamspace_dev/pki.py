"""Key material for the local control plane: a self-signed CA, serving and client certs, keys."""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    now: dt.datetime,
    common_name: str,
    *,
    names: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def write_pki(directory: Path) -> str:
    """Write CA, serving certs (API server, etcd), etcd client cert, service-account keys and a
    static token file; return the token."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streamspace-dev-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    loopback = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    server_auth = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
    client_auth = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
    issue = functools.partial(_issue, ca_key, ca_name, now)
    apiserver = issue(
        "kube-apiserver",
        names=[*loopback, x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default.svc")],
        usages=[server_auth],
    )
    # etcd speaks TLS only, to clients and its peer alike, and takes only clients with a
    # certificate of this CA: the API server's, and the health check's.
    etcd = issue("etcd", names=loopback, usages=[server_auth, client_auth])
    etcd_client = issue("kube-apiserver-etcd-client", names=[], usages=[client_auth])
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    _write(directory / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(directory / "ca.key", _pem_key(ca_key))
    for name, (cert, key) in (
        ("apiserver", apiserver),
        ("etcd", etcd),
        ("etcd-client", etcd_client),
    ):
        _write(directory / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        _write(directory / f"{name}.key", _pem_key(key))
    _write(directory / "sa.key", _pem_key(sa_key))
    _write(
        directory / "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    token = secrets.token_hex(24)
    # token,user,uid,"group1,group2" — the admin of the local cluster.
    _write(directory / "tokens.csv", f'{token},streamspace-admin,1000,"system:masters"\n'.encode())
    return token
