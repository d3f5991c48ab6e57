"""Comparing email addresses as a person means them: the local part exactly
(after Unicode NFC normalisation), the domain in any case and in either its
Unicode (U-label) or its ASCII (A-label, ``xn--``) form.

Domains are converted with the ``idna`` package (IDNA 2008 with the UTS 46
mapping, non-transitional), not the standard library's ``idna`` codec, which
implements IDNA 2003 and maps ``straße.de`` to ``strasse.de``, another domain.
``idna`` is already installed with ``trustme``, a dependency of this package.
A label that IDNA refuses (``_dmarc``, a bad ``xn--`` label, an address
literal) is compared in lower case as written.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["address_key", "ascii_address", "domain_key", "same_address"]


def _label_key(label: str) -> str:
    if label.isascii() and not label.lower().startswith("xn--"):
        return label.lower()
    import idna  # only for a domain that needs it: most tests never do

    try:
        return idna.encode(label, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return label.lower()


@lru_cache(maxsize=4096)
def domain_key(domain: str) -> str:
    """The form two spellings of one domain share: NFC, then each label in
    its lower-case A-label form where IDNA 2008 allows, else lower case."""
    domain = unicodedata.normalize("NFC", domain)
    if domain.startswith("[") or (domain.isascii() and "xn--" not in domain.lower()):
        return domain.lower()
    # U+3002 and the other dots UTS 46 maps to ".": split on each of them.
    for dot in ("\u3002", "\uff0e", "\uff61"):
        domain = domain.replace(dot, ".")
    return ".".join(_label_key(label) for label in domain.split("."))


@lru_cache(maxsize=4096)
def address_key(address: str) -> tuple[str, str]:
    """``(local part, domain key)``: equal for addresses that are the same
    mailbox as far as a test can tell."""
    local, _, domain = address.rpartition("@")
    return unicodedata.normalize("NFC", local), domain_key(domain)


def same_address(one: str, other: str) -> bool:
    """Addresses compare with the local part as written (NFC normalised) and
    the domain in any case and in either its Unicode or its ``xn--`` form."""
    return one == other or address_key(one) == address_key(other)


def ascii_address(address: str) -> str:
    """An ASCII spelling of ``address`` for places that take nothing else
    (an mbox ``From_`` line): the domain's non-ASCII labels as A-labels, any
    other non-ASCII character as ``\\x{HEX}`` (the escape of RFC 6533's
    utf-8-addr-xtext)."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if at:
        labels = [_label_key(label) if not label.isascii() else label for label in domain.split(".")]
        domain = ".".join(labels)
    escaped = [ch if ch.isascii() else f"\\x{{{ord(ch):X}}}" for ch in f"{local}{at}{domain}"]
    return "".join(escaped)
