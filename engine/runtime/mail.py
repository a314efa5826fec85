"""Sending email: `Mailer("smtp://user:pass@host:587", sender="signoff@example.com")`.

The message is built with the standard library's `email` package (a plain-text part and an HTML
alternative) and handed to the server with `smtplib`, which blocks: the outbox's sender calls
`send` from a worker thread, never on an event loop and never inside a transition. STARTTLS is
used whenever the server offers it (`smtp://`); `smtps://` speaks TLS from the first byte
(port 465). A user and password in the URL log in. Every call has a timeout.

The Message-ID is made from the message's idempotency key: a message sent again after a sender
died between the server's "250 OK" and marking it sent carries the same Message-ID, which mail
systems use to recognise the copy. At least once, with that dedupe, is the honest guarantee.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from urllib.parse import unquote, urlsplit

from signoff.engine.core.addresses import checked_address
from signoff.engine.errors import Unavailable, brief

DEFAULT_TIMEOUT = 20.0  # seconds for connecting and for each reply of the server
PORTS = {"smtp": 587, "smtps": 465}


class Mailer:
    """An SMTP server to send through. `url` is `smtp://[user:password@]host[:port]` (STARTTLS
    when offered; port 587 by default) or `smtps://...` (TLS at once; port 465); `sender` is
    the From address, optionally with a name ("signoff <signoff@example.com>")."""

    def __init__(
        self,
        url: str,
        sender: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if not isinstance(url, str) or any(ord(c) < 32 for c in url):
            raise ValueError("the SMTP URL must be one line of text, like smtp://host:587")
        parts = urlsplit(url)
        if parts.scheme not in PORTS:
            raise ValueError(
                f"the SMTP URL must start with smtp:// or smtps://, not {parts.scheme or '?'}://"
            )
        if not parts.hostname:
            raise ValueError("the SMTP URL names no host, like smtp://mail.example.com:587")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the SMTP URL's port is not a number from 1 to 65535") from None
        if not 0 < timeout <= 300:
            raise ValueError("the SMTP timeout is between 0 and 300 seconds")
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = port or PORTS[parts.scheme]
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self.tls_context = tls_context or ssl.create_default_context()
        found = getaddresses([sender]) if isinstance(sender, str) else []
        name, address = found[0] if len(found) == 1 else ("", "")
        if not address or any(ord(c) < 32 for c in sender) or "," in address:
            raise ValueError(f"the sender {sender[:80]!r} is not an address like a@example.com")
        self.sender_address = checked_address(address, "the sender's address")
        local, _, self.domain = self.sender_address.rpartition("@")
        self.sender = Address(display_name=name, username=local, domain=self.domain)

    def __repr__(self) -> str:  # never the password
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"Mailer('{scheme}://{self.host}:{self.port}', sender='{self.sender_address}')"

    def message_id(self, key: str) -> str:
        """The Message-ID of the message with idempotency key `key`: the same every time."""
        return f"<{key[:48]}@{self.domain}>"

    def compose(self, to: str, content: Mapping[str, str], key: str, now: datetime) -> EmailMessage:
        """The message: headers, a plain-text part and (when there is one) an HTML part."""
        address = checked_address(to, "the recipient's address")
        local, _, domain = address.rpartition("@")
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = Address(username=local, domain=domain)
        message["Subject"] = " ".join(str(content.get("subject", "")).split())
        message["Date"] = format_datetime(now)
        message["Message-ID"] = self.message_id(key)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
        message.set_content(str(content.get("text", "")))
        if content.get("html"):
            message.add_alternative(str(content["html"]), subtype="html")
        return message

    def send(self, to: str, content: Mapping[str, str], key: str, now: datetime) -> str:
        """Hand the message to the server; returns what it answered. Raises `Unavailable`
        with the server's reply ("550 5.1.1 no such user") or why it could not be reached.
        Blocks: call it from a worker thread."""
        message = self.compose(to, content, key, now)
        address = checked_address(to, "the recipient's address")
        try:
            with self._connect() as smtp:
                if not self.implicit_tls:
                    smtp.ehlo()
                    if smtp.has_extn("starttls"):
                        smtp.starttls(context=self.tls_context)
                        smtp.ehlo()
                if self.user is not None:
                    smtp.login(self.user, self.password or "")
                refused = smtp.send_message(message, self.sender_address, [address])
                if refused:
                    code, reply = next(iter(refused.values()))
                    raise Unavailable(f"{code} {_text(reply)}")
                return "accepted"
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise Unavailable(f"{code} {_text(reply)}") from exc
        except smtplib.SMTPResponseException as exc:
            raise Unavailable(f"{exc.smtp_code} {_text(exc.smtp_error)}") from exc
        except smtplib.SMTPServerDisconnected as exc:
            if "timed out" not in str(exc):
                raise Unavailable(
                    f"the mail server {self.host}:{self.port} closed the connection: {brief(exc)}"
                ) from exc
            raise Unavailable(
                f"the mail server {self.host}:{self.port} did not answer within {self.timeout:g} s"
            ) from exc
        except TimeoutError as exc:
            raise Unavailable(
                f"the mail server {self.host}:{self.port} did not answer within {self.timeout:g} s"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise Unavailable(
                f"the mail server {self.host}:{self.port} could not be reached: {brief(exc)}"
            ) from exc

    def _connect(self) -> smtplib.SMTP:
        if self.implicit_tls:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self.tls_context
            )
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return " ".join(text.split())[:300]
