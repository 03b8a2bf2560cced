"""Process-wide asyncio tuning for ``xcpconsole serve``: an explicit step of serving.

:func:`shrink_tls_read_buffers` changes a class attribute of asyncio's TLS layer, so
it affects every TLS connection of the process, not one application.  That is why
:func:`~xcpconsole.web.app.create_app` does not call it: the commands that run the
gateway (``serve``, ``demo``) call it once before they start it.
"""

from __future__ import annotations

#: Bytes asyncio's TLS layer reads from a socket at once.  Its default (256 KiB) is
#: allocated up front for every TLS connection, which made it most of the gateway's
#: memory per open console (measured: 352 KiB per session, 256 of them this buffer).
#: TLS records are at most 16 KiB, so 64 KiB still reads several per call.
TLS_READ_BUFFER = 64 * 1024


def shrink_tls_read_buffers() -> None:
    """Cap asyncio's per-connection TLS read buffer at :data:`TLS_READ_BUFFER`."""
    from asyncio import sslproto

    if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
