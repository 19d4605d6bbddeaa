"""Git repositories made by the tests, and a loopback HTTPS Git server (dulwich) with auth."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dulwich import porcelain
from dulwich.repo import Repo
from dulwich.server import DictBackend
from dulwich.web import make_wsgi_chain

AUTHOR = b"Tests <tests@streamspace.invalid>"


def template_yaml(name: str, display: str, *, legacy: bool = True, extra: str = "") -> str:
    api = "stream.streamspace.io/v1alpha1" if legacy else "stream.space/v1alpha1"
    return f"""apiVersion: {api}
kind: Template
metadata:
  name: {name}
  namespace: workspaces
spec:
  displayName: {display}
  description: {display} in your browser
  category: Testing
  baseImage: lscr.io/linuxserver/{name}:latest
  defaultResources:
    memory: 2Gi
    cpu: 1000m
  ports:
    - name: kasmvnc
      containerPort: 3000
  kasmvnc:
    enabled: true
    port: 3000
  tags: [{name}, test]
{extra}"""


# The public repository's quirks, in a small repository of our own.
PUBLIC_FORMAT: dict[str, str] = {
    "browsers/firefox.yaml": template_yaml("firefox", "Firefox"),
    "browsers/chromium.yaml": template_yaml("chromium", "Chromium", legacy=False),
    "Design, Graphics/gimp.yaml": template_yaml("gimp", "GIMP"),
    "development/vscode.yaml": """apiVersion: stream.space/v1alpha1
kind: Template
metadata: {name: vscode}
spec:
  displayName: VS Code
  baseImage: lscr.io/linuxserver/code-server:latest
  ports: [{name: http, containerPort: 8443}]
  kasmvnc: {enabled: false}
""",
    "multi/pair.yaml": template_yaml("pair-a", "Pair A")
    + "---\n"
    + template_yaml("pair-b", "Pair B")
    + "---\napiVersion: stream.space/v1alpha1\nkind: TemplateCatalog\nmetadata: {name: inner}\n",
    "catalog.yaml": "apiVersion: stream.space/v1alpha1\nkind: TemplateCatalog\n"
    "metadata: {name: catalog}\nspec: {templates: [firefox, gimp]}\n",
    "duplicates/firefox.yaml": template_yaml("firefox", "Firefox (again)"),
    "broken/bad.yaml": "apiVersion: stream.space/v1alpha1\nkind: Template\nmetadata: {name: [\n",
    "broken/bad-name.yaml": template_yaml("bad_name", "Bad name"),
    "broken/no-image.yaml": "apiVersion: stream.space/v1alpha1\nkind: Template\n"
    "metadata: {name: no-image}\nspec: {displayName: No image}\n",
    "README.md": "# templates\n",
}
PUBLIC_FORMAT_TEMPLATES = {"firefox", "chromium", "gimp", "vscode", "pair-a", "pair-b"}


@dataclass
class GitRepo:
    path: Path

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def head(self) -> str:
        with Repo(str(self.path)) as repo:
            return repo.head().decode()

    def commit(
        self, files: dict[str, str], remove: Iterable[str] = (), message: str = "change"
    ) -> str:
        paths = []
        for rel, text in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            paths.append(str(target))
        for rel in remove:
            porcelain.remove(str(self.path), paths=[str(self.path / rel)])
        if paths:
            porcelain.add(str(self.path), paths=paths)
        porcelain.commit(str(self.path), message=message.encode(), author=AUTHOR, committer=AUTHOR)
        return self.head()

    def symlink(self, rel: str, target: str) -> None:
        link = self.path / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
        porcelain.add(str(self.path), paths=[str(link)])


def make_repo(path: Path, files: dict[str, str]) -> GitRepo:
    """A non-bare repository on branch ``main`` with ``files`` committed."""
    path.mkdir(parents=True)
    repo = porcelain.init(str(path))
    repo.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    repo.close()
    git = GitRepo(path)
    git.commit(files, message="initial")
    return git


# -- a loopback HTTPS Git server ---------------------------------------------------------------


def tls_material(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test git CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        del format, args


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True


@dataclass
class HttpsGitServer:
    base_url: str
    ca_bundle: Path
    requests: list[str]  # the Authorization header of every request ("" when none)
    sent: list[int]  # bytes of response body handed to the socket, per request


def _counting(
    app: Callable[..., Any], sent: list[int]
) -> Callable[[dict[str, Any], Callable[..., Any]], Any]:
    """``app``, counting the response bytes the socket accepted, through either of WSGI's
    ways to send them (dulwich streams a pack through ``start_response``'s ``write``); once
    the client hangs up a write fails and counting stops."""

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        index = len(sent)
        sent.append(0)

        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            write = start_response(status, headers, *exc_info)

            def counted_write(data: bytes) -> None:
                write(data)
                sent[index] += len(data)

            return counted_write

        def body() -> Iterator[bytes]:
            result = app(environ, start)
            try:
                for chunk in result:
                    yield chunk
                    sent[index] += len(chunk)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()

        return body()

    return counted


@contextmanager
def https_git_server(
    repos: dict[str, Path],
    directory: Path,
    username: str | None,
    password: str | None,
    *,
    redirect: Callable[[str], str | None] = lambda path: None,
) -> Iterator[HttpsGitServer]:
    """Serve ``repos`` (name → repository path) over HTTPS on 127.0.0.1 behind basic auth (none
    when ``username`` is None). ``redirect`` maps a request path (with query) to a Location: a
    302 answers that request instead."""
    backend = DictBackend({f"/{name}": Repo(str(path)) for name, path in repos.items()})
    sent: list[int] = []
    git_app = _counting(make_wsgi_chain(backend), sent)
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        header = environ.get("HTTP_AUTHORIZATION", "")
        seen.append(header)
        query = environ.get("QUERY_STRING", "")
        location = redirect(environ.get("PATH_INFO", "") + (f"?{query}" if query else ""))
        if location is not None:
            start_response("302 Found", [("Location", location)])
            return [b""]
        if username is not None and header != expected:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"')])
            return [b"unauthorized"]
        return git_app(environ, start_response)

    ca, cert, key = tls_material(directory)
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    # The handshake happens in the handler thread (first read), not in accept(): a client that
    # hangs up mid-handshake then fails inside the handler, whose socket socketserver closes,
    # instead of leaving a half-made TLS socket behind in accept().
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HttpsGitServer(f"https://127.0.0.1:{server.server_port}", ca, seen, sent)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class RecordingHttpServer:
    base_url: str
    requests: list[str]  # "METHOD path Authorization-header" of every request


@contextmanager
def recording_http_server(answer: bytes) -> Iterator[RecordingHttpServer]:
    """A plain HTTP server on 127.0.0.1 that answers every request with ``answer`` and records
    it: the stand-in for a cloud metadata service in the SSRF tests."""
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        seen.append(
            f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')} "
            f"{environ.get('HTTP_AUTHORIZATION', '')}"
        )
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [answer]

    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RecordingHttpServer(f"http://127.0.0.1:{server.server_port}", seen)
    finally:
        server.shutdown()
        server.server_close()


# -- a loopback sshd serving Git -----------------------------------------------------------------


@dataclass
class SshGitServer:
    port: int
    user: str
    private_key: str
    known_hosts: str

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


@contextmanager
def ssh_git_server(directory: Path) -> Iterator[SshGitServer]:
    """OpenSSH's sshd on 127.0.0.1, accepting one generated key, for `git-upload-pack`."""
    import getpass  # noqa: PLC0415
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    from streamspace_dev import process  # noqa: PLC0415

    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists():
        raise RuntimeError("sshd is needed for the ssh tests: install openssh-server")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("host", "client"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)],
            check=True,
        )
    (directory / "authorized_keys").write_text((directory / "client.pub").read_text())
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    port = process.free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory / 'host'}\n"
        f"PidFile {directory / 'sshd.pid'}\nAuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n"
    )
    record = process.start("sshd", [sshd, "-D", "-e", "-f", str(config)], directory / "sshd.log")
    try:
        import socket  # noqa: PLC0415

        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        if not process.wait_until(listening, 20):
            raise RuntimeError("sshd did not start:\n" + process.log_tail(record))
        host_key = (directory / "host.pub").read_text().split()
        yield SshGitServer(
            port=port,
            user=getpass.getuser(),
            private_key=(directory / "client").read_text(),
            known_hosts=f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n",
        )
    finally:
        process.stop(record)
