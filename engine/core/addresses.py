"""Email addresses as signoff takes them in: one rule for every door (`emails=`,
SIGNOFF_USER_EMAILS, an approver written as an address, a sender).

An address goes into a mail header, so anything that could end a header line or start another
(CR, LF, any control character) is refused, and so are spaces, angle brackets, commas and
quotes, which would let one "address" name several recipients. A domain in another script is
written in IDNA (`bücher.example` -> `xn--bcher-kva.example`); a local part outside ASCII is
refused, as delivering it needs SMTPUTF8, which signoff does not assume of a mail server.
"""

from __future__ import annotations

import re

MAX_ADDRESS = 254  # RFC 5321's limit on a path, less its angle brackets
MAX_LOCAL = 64
# what a local part may hold without quoting (RFC 5322's dot-atom), and a domain label's letters
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def looks_like_address(name: str) -> bool:
    """Whether a name (an approver, a user) is written as an email address: then it is one."""
    return isinstance(name, str) and "@" in name and address_problem(name) is None


def address_problem(text: object, what: str = "an email address") -> str | None:
    """Why `text` cannot be used as an email address, in a sentence; None when it can."""
    try:
        checked_address(text, what)
    except ValueError as exc:
        return str(exc)
    return None


def checked_address(text: object, what: str = "an email address") -> str:
    """`text` as an address signoff can put in a header: the domain in IDNA (lower case).
    Raises ValueError, saying what is wrong, for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be text, not {type(text).__name__}")
    shown = repr(text[:80])
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(
            f"{what} {shown} contains a line break or another control character, which could "
            "add a header to the message: refused"
        )
    if len(text) > MAX_ADDRESS:
        raise ValueError(f"{what} is longer than {MAX_ADDRESS} characters")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{what} {shown} is not an address like name@example.com")
    if not local.isascii():
        raise ValueError(
            f"{what} {shown} has letters outside ASCII before the @; signoff sends only to "
            "ASCII mailbox names (the domain may be in any script)"
        )
    if len(local) > MAX_LOCAL or not _LOCAL.fullmatch(local):
        raise ValueError(
            f"{what} {shown}: the part before the @ may hold letters, digits and "
            "!#$%&'*+-/=?^_`{|}~ separated by single dots, and no spaces, quotes, "
            "commas or angle brackets"
        )
    domain = domain.rstrip(".") if domain.endswith(".") and len(domain) > 1 else domain
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{what} {shown} has a domain that is not a valid name") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"{what} {shown} needs a domain like example.com (letters, digits and hyphens, "
            "in dot-separated parts)"
        )
    return f"{local}@{ascii_domain}"
