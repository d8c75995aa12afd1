"""Real receivers for alert tests: an HTTP server for Slack and webhooks, an SMTP server.

Both listen on 127.0.0.1 on a free port. The HTTP receiver answers from a script per path (status,
body, delay), so a test can make a channel fail, recover or hang; the SMTP receiver is aiosmtpd,
optionally with STARTTLS (a self-signed certificate made here) and AUTH.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOCALHOST = "127.0.0.1"


# --- HTTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = "ok"
    delay_seconds: float = 0.0
    echo_path: bool = False  # put the request path into the body, like some error pages do


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # the event loop's clock

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """POST receiver with scripted answers; after a path's script runs out it answers 200."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._defaults: dict[str, Reply] = {}
        self._closing = asyncio.Event()
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def script(self, path: str, *replies: Reply, then: Reply | None = None) -> None:
        """Answer the next requests to `path` with `replies`, then with `then` (default 200)."""
        self._scripts[path].extend(replies)
        if then is not None:
            self._defaults[path] = then

    def url(self, path: str) -> str:
        return f"http://{LOCALHOST}:{self.port}{path}"

    def to(self, path: str) -> list[ReceivedRequest]:
        return [request for request in self.requests if request.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout_seconds: float = 5.0) -> None:
        async with asyncio.timeout(timeout_seconds), self._arrived:
            await self._arrived.wait_for(lambda: len(self.to(path)) >= count)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            ReceivedRequest(
                request.path, dict(request.headers), body, asyncio.get_running_loop().time()
            )
        )
        async with self._arrived:
            self._arrived.notify_all()
        script = self._scripts[request.path]
        reply = script.popleft() if script else self._defaults.get(request.path, Reply())
        if reply.delay_seconds:
            # Released early when the receiver stops, so shutdown never waits on a hung reply.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.delay_seconds)
        text = f"{reply.body} {request.path_qs}" if reply.echo_path else reply.body
        return web.Response(status=reply.status, text=text)

    async def start(self) -> HttpReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOCALHOST, 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> HttpReceiver:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


# --- TLS --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfSignedCertificate:
    cert_path: Path
    key_path: Path
    pem: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this certificate (hostname checks stay on)."""
        return ssl.create_default_context(cadata=self.pem)


def make_self_signed_certificate(directory: Path) -> SelfSignedCertificate:
    """A certificate for 127.0.0.1 and localhost, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orion-test-smtp")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOCALHOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
    cert_path = directory / "smtp-cert.pem"
    key_path = directory / "smtp-key.pem"
    cert_path.write_text(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return SelfSignedCertificate(cert_path, key_path, pem)


# --- SMTP -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    over_tls: bool
    login: str | None  # the AUTH user, when the client logged in


@dataclass
class _Recorder:
    credentials: tuple[str, str] | None
    messages: list[ReceivedMail] = field(default_factory=list)
    failed_logins: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        transport = server.transport
        over_tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        login = getattr(session, "login_data", None)
        with self.lock:
            self.messages.append(
                ReceivedMail(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=list(envelope.rcpt_tos),
                    message=message,
                    over_tls=over_tls,
                    login=login.decode() if isinstance(login, bytes) else login,
                )
            )
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if self.credentials is not None and isinstance(auth_data, LoginPassword):
            user, password = self.credentials
            if auth_data.login == user.encode() and auth_data.password == password.encode():
                return AuthResult(success=True, auth_data=auth_data)
        with self.lock:
            self.failed_logins += 1
        return AuthResult(success=False, handled=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        port: int = probe.getsockname()[1]
        return port


class SmtpReceiver:
    """aiosmtpd in its own thread. With `starttls` it offers STARTTLS and requires it; with
    `credentials` it requires AUTH (which aiosmtpd only allows over TLS); with `implicit_tls` the
    connection is TLS from the first byte (SMTPS)."""

    def __init__(
        self,
        *,
        certificate: SelfSignedCertificate | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self._recorder = _Recorder(credentials)
        options: dict[str, Any] = {}
        if starttls or implicit_tls:
            assert certificate is not None, "TLS needs a certificate"
        if starttls and certificate is not None:
            options.update(tls_context=certificate.server_context(), require_starttls=True)
        if implicit_tls and certificate is not None:
            options.update(ssl_context=certificate.server_context())
        if credentials is not None:
            options.update(authenticator=self._recorder.authenticate, auth_required=True)
        self.port = free_port()
        self._controller = Controller(
            self._recorder, hostname=LOCALHOST, port=self.port, ready_timeout=5.0, **options
        )

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._recorder.lock:
            return list(self._recorder.messages)

    @property
    def failed_logins(self) -> int:
        with self._recorder.lock:
            return self._recorder.failed_logins

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
