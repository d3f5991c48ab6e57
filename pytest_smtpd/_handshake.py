"""The TLS handshake of a session: at once for implicit TLS (RFC 8314), or
after ``220 Ready to start TLS`` for STARTTLS (RFC 3207), with the public
``loop.start_tls()``; a failed handshake ends that session only. Functions
of the session (``SessionProtocol``), which starts them as its busy task.
On Python 3.10, the ``_py310`` functions work around its old TLS layer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from asyncio import sslproto
from typing import TYPE_CHECKING

from .message import TLSInfo

if TYPE_CHECKING:
    from .transport import SessionProtocol

log = logging.getLogger("pytest_smtpd")
#: Seconds a client has to finish a TLS handshake (when the server has no
#: ``timeout``; otherwise the server's ``timeout``).
TLS_HANDSHAKE_TIMEOUT = 30.0


def tls_info(transport: asyncio.BaseTransport, mode: str) -> TLSInfo | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return TLSInfo(version=ssl_object.version() or "", cipher=cipher[0] if cipher else "", mode=mode)


def start_handshake(session: SessionProtocol, transport: asyncio.Transport, mode: str) -> None:
    session._handshaking = True
    session._busy = asyncio.ensure_future(start_tls(session, transport, mode))


async def start_tls(session: SessionProtocol, transport: asyncio.Transport, mode: str) -> None:
    """Do the TLS handshake: at once for implicit TLS, or after ``220
    Ready to start TLS``. A failed handshake ends this session only."""
    context = session.owner.tls_context
    assert context is not None, "TLS offered without a TLS context"
    loop = asyncio.get_running_loop()
    timeout = session.owner.timeout or TLS_HANDSHAKE_TIMEOUT
    if session._writing_paused:
        # The client has not read what it was sent (its 220 among it).
        # The transport tells this protocol when its buffer drains, and
        # start_tls() would hand that to the TLS protocol half-way: asyncio
        # then fails an assertion, and this session stays paused for good
        # (no command read after an async handler). Drain first.
        drained = session._drained = loop.create_future()
        try:
            await asyncio.wait_for(drained, timeout)
        except asyncio.TimeoutError:
            log.warning("TLS handshake (%s) with %s: the client does not read its replies", mode, session.peer)
            if session._ended_by is None:
                session._ended_by = "timeout"
            session._handshaking = False
            session._busy = None
            transport.abort()  # this protocol's connection_lost() ends the session
            return
        finally:
            session._drained = None
        if session._gone:
            # Gone meanwhile (the peer hung up, or stop() aborted it).
            session._handshaking = False
            session._busy = None
            return
    # start_tls() hands the socket to its TLS protocol before it first
    # waits, so from here on data_received() gets decrypted data only.
    # Data that came with the client's last handshake message (say, the
    # EHLO right after its Finished) is delivered before start_tls()
    # returns, while the core still drops everything as plaintext sent
    # after STARTTLS: keep it for after tls_started().
    session._tls_early = bytearray()
    if sys.version_info < (3, 11):
        loop.call_soon(functools.partial(hold_tls_transport_py310, session), transport)
        loop.call_soon(send_close_notify_py310, transport)
    try:
        tls_transport = await loop.start_tls(
            transport,
            session,
            context,
            server_side=True,
            ssl_handshake_timeout=timeout,
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not session._hanging_up:
            log.warning("TLS handshake (%s) with %s failed: %s", mode, session.peer, exc)
        session._busy = None
        close_held_tls_transport_py310(session)
        transport.abort()
        session.connection_lost(exc)
        return
    finally:
        session._handshaking = False
        early, session._tls_early = session._tls_early, None
    if tls_transport is None or session._gone or session._hanging_up:
        # The peer went away during the handshake or right after it, or
        # the server is stopping.
        session._busy = None
        if tls_transport is not None:
            tls_transport.close()
        close_held_tls_transport_py310(session)
        session.connection_lost(None)
        return
    session._busy = None
    session._raw_transport = transport
    session.transport = tls_transport
    session.tls = tls_info(tls_transport, mode)
    if session.record is not None:
        session.record.tls = session.tls
    if mode == "starttls":
        session.core.tls_started()
    session._touch()
    if early:
        session.core.receive_data(bytes(early))
    session._process()


def hold_tls_transport_py310(session: SessionProtocol, transport: asyncio.Transport) -> None:
    """Python 3.10's start_tls() drops the TLS transport it made, unclosed
    (a ResourceWarning when it is collected), when the peer hangs up just
    as the handshake ends: it then returns None. Keep hold of it so that
    it can be closed. Runs once start_tls() has handed the socket over."""
    session._tls_transport_py310 = getattr(transport.get_protocol(), "_app_transport", None)


def close_held_tls_transport_py310(session: SessionProtocol) -> None:
    held, session._tls_transport_py310 = session._tls_transport_py310, None
    if held is not None and not held.is_closing():
        held.close()


def send_close_notify_py310(transport: asyncio.Transport) -> None:
    """Python 3.10's TLS layer (the old asyncio.sslproto) loses the
    close_notify it owes a client whose own close_notify is already in (with
    its QUIT, or alone). The TLS shutdown then completes in one step, whose
    callback, ``SSLProtocol._finalize``, closes the socket transport before
    the close_notify that step made is written, and the closed transport
    drops the write (3.10's sslproto.py: ``_SSLPipe.feed_ssldata`` calls the
    callback, then reads the close_notify out; ``_process_write_backlog``
    writes it after). In its place: drop the TLS state at once, as it does
    (nothing more is read or written in TLS), and close the socket one loop
    step later, after the write. Runs once start_tls() has handed the socket
    over (``transport``'s protocol is then the TLS protocol); leaves a TLS
    layer that is not that one as it is."""
    if sys.version_info >= (3, 11):
        return
    protocol = transport.get_protocol()
    if not isinstance(protocol, sslproto.SSLProtocol) or not hasattr(protocol, "_sslpipe"):
        return
    loop = asyncio.get_running_loop()

    def finalize_after_the_write() -> None:
        protocol._sslpipe = None
        loop.call_soon(transport.close)  # a no-op once the socket is closed

    protocol._finalize = finalize_after_the_write  # type: ignore[method-assign]
