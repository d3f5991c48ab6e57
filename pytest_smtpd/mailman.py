"""``MailmanProxy`` for Mailman 3: list mail over LMTP, the rest relayed.

The stdlib class imported Mailman 2's modules and has not worked since
Mailman 3, which takes mail on an LMTP port (8024 by default) instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from . import compat
from .lmtp import LMTPResult, deliver_lmtp
from .proxy import DeliveryResult, PureProxy, add_x_peer, summarize, to_wire
from .server import default_hostname

__all__ = ["DEFAULT_MAILMAN_LMTP", "LIST_SUFFIXES", "MailmanProxy", "list_matcher"]

#: Where Mailman 3 listens for LMTP by default.
DEFAULT_MAILMAN_LMTP = ("127.0.0.1", 8024)
#: Mailman 3's sub-addresses of a list ``name@domain``: ``name-request@domain``
#: and so on; ``-bounces`` and ``-confirm`` may carry ``+token``.
LIST_SUFFIXES = ("-bounces", "-confirm", "-join", "-leave", "-owner", "-request", "-subscribe", "-unsubscribe")


def list_matcher(lists: Iterable[str]) -> Callable[[str], bool]:
    """A predicate saying whether a recipient is one of ``lists`` (posting
    addresses such as ``team@lists.example.com``) or one of their
    sub-addresses. Case-insensitive."""
    posting = {address.lower() for address in lists}

    def belongs(recipient: str) -> bool:
        address = recipient.lower()
        if address in posting:
            return True
        local, at, domain = address.rpartition("@")
        if not at:
            return False
        local = local.split("+", 1)[0]
        bases = (local[: -len(suffix)] for suffix in LIST_SUFFIXES if local.endswith(suffix))
        return any(f"{base}@{domain}" in posting for base in bases)

    return belongs


class MailmanProxy(PureProxy):
    """Delivers the recipients that belong to a mailing list to Mailman 3
    over LMTP, and relays every other recipient to ``remoteaddr`` as
    ``PureProxy`` does. The client's reply covers both parts: ``250 OK`` when
    every recipient got the message, a ``250`` naming the refused ones when
    some did, the refusal when none did.

    ``lists`` says which recipients are Mailman's: an iterable of list
    posting addresses (their ``-request``, ``-join``, ``-leave``, ``-owner``,
    ``-bounces``, ``-confirm``, ``-subscribe`` and ``-unsubscribe``
    sub-addresses go to Mailman too), or a callable given each recipient.
    ``mailman_lmtp`` is Mailman's LMTP address.
    """

    def __init__(
        self,
        localaddr: tuple[str, int],
        remoteaddr: tuple[str, int] | None,
        *args: Any,
        lists: Iterable[str] | Callable[[str], bool] = (),
        mailman_lmtp: tuple[str, int] = DEFAULT_MAILMAN_LMTP,
        **kwargs: Any,
    ) -> None:
        self.is_list_address: Callable[[str], bool] = lists if callable(lists) else list_matcher(lists)
        self.mailman_lmtp = mailman_lmtp
        super().__init__(localaddr, remoteaddr, *args, **kwargs)

    def process_message(
        self, peer: tuple[str, int], mailfrom: str, rcpttos: list[str], data: bytes | str, **kwargs: Any
    ) -> Awaitable[str | None]:
        """Send the list recipients' copy to Mailman over LMTP and relay the
        rest upstream, both at once, with ``X-Peer`` added. Returns a
        coroutine the server awaits, resolving to one reply over both parts
        (None: ``250 OK``)."""
        message = add_x_peer(to_wire(data), peer[0])
        mail_options = list(kwargs.get("mail_options") or [])
        return self._route(mailfrom, list(rcpttos), message, mail_options)

    async def _route(self, mailfrom: str, rcpttos: list[str], message: bytes, mail_options: list[str]) -> str | None:
        mailfrom = compat.envelope_address(mailfrom)
        to_mailman = [rcpt for rcpt in rcpttos if self.is_list_address(rcpt)]
        to_upstream = [rcpt for rcpt in rcpttos if rcpt not in to_mailman]
        delivered: list[str] = []
        refused: dict[str, tuple[int, str]] = {}
        parts: list[Awaitable[LMTPResult | DeliveryResult]] = []
        if to_mailman:
            parts.append(
                deliver_lmtp(
                    self.mailman_lmtp,
                    mailfrom,
                    to_mailman,
                    message,
                    local_hostname=default_hostname(),
                    mail_options=[o.upper() for o in mail_options if o.upper() in ("SMTPUTF8", "BODY=8BITMIME")],
                    timeout=self.upstream_timeout,
                )
            )
        if to_upstream:
            parts.append(self.deliver(mailfrom, to_upstream, message, mail_options=mail_options))
        for result in await asyncio.gather(*parts):
            delivered += result.delivered
            refused.update(result.refused)
        print(f"mailman: {to_mailman!r}, relayed: {to_upstream!r}, refused: {refused!r}", file=compat._debugstream())
        # An unreachable Mailman is a temporary failure for its recipients.
        refused = {rcpt: (451 if code == -1 else code, text) for rcpt, (code, text) in refused.items()}
        return summarize(delivered, refused)
