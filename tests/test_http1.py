"""The CONNECT reply-head parser, fed bytes: real host replies, splits, garbage, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xcpconsole.errors import LimitExceededError, ProtocolError, XcpConsoleError
from xcpconsole.http1 import ConnectReplyParser

OK = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"
UNAUTH = (b"HTTP/1.0 401 Unauthorised\r\nContent-Type: text/html\r\nConnection: close\r\n"
          b"WWW-Authenticate: Basic realm=\"xapi\"\r\n\r\n<html><body><h1>HTTP 401 "
          b"unauthorised</h1>Please check your credentials and retry.</body></html>")


def test_host_200_then_rfb_greeting_in_same_chunk() -> None:
    reply = ConnectReplyParser().feed(OK + b"RFB 003.008\n")
    assert reply is not None
    assert (reply.version, reply.status, reply.reason) == ("HTTP/1.1", 200, "OK")
    assert reply.headers == (("Connection", "keep-alive"),
                             ("Cache-Control", "no-cache, no-store"))
    assert reply.header("connection") == "keep-alive"
    assert reply.leftover == b"RFB 003.008\n"


def test_byte_by_byte_gives_same_reply() -> None:
    data = OK + b"\x00\x01payload"
    parser = ConnectReplyParser()
    replies = [parser.feed(data[i:i + 1]) for i in range(len(OK))]
    assert replies[:-1] == [None] * (len(OK) - 1)
    whole = ConnectReplyParser().feed(OK)
    assert replies[-1] == whole
    assert replies[-1] is not None and replies[-1].leftover == b""


def test_401_reply_in_request_version_with_body_as_leftover() -> None:
    reply = ConnectReplyParser().feed(UNAUTH)
    assert reply is not None
    assert (reply.version, reply.status, reply.reason) == ("HTTP/1.0", 401, "Unauthorised")
    assert reply.header("WWW-Authenticate") == 'Basic realm="xapi"'
    assert reply.leftover.startswith(b"<html>")


def test_bare_lf_line_ends_and_no_headers() -> None:
    reply = ConnectReplyParser().feed(b"HTTP/1.0 200 OK\n\nabc")
    assert reply is not None and reply.status == 200 and reply.headers == ()
    assert reply.leftover == b"abc"


def test_head_larger_than_bound_is_refused() -> None:
    parser = ConnectReplyParser(max_head=1024)
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(LimitExceededError):
        for _ in range(100):
            parser.feed(b"X-Filler: " + b"a" * 50 + b"\r\n")


def test_complete_head_over_bound_in_one_chunk_is_refused() -> None:
    head = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 2000 + b"\r\n\r\n"
    with pytest.raises(LimitExceededError):
        ConnectReplyParser(max_head=1024).feed(head)


@pytest.mark.parametrize("data", [
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    b"HTTP/1.1 200 \xffOK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
])
def test_garbage_heads_raise_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        ConnectReplyParser().feed(data)


def test_eof_before_end_of_head() -> None:
    parser = ConnectReplyParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProtocolError, match="before the end"):
        parser.feed(b"")


def test_no_feeding_after_done() -> None:
    parser = ConnectReplyParser()
    assert parser.feed(OK) is not None and parser.done
    with pytest.raises(ProtocolError):
        parser.feed(b"more")


def test_too_many_headers() -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n"
    with pytest.raises(LimitExceededError):
        ConnectReplyParser().feed(head)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_bytes_only_raise_our_errors(chunks: list[bytes]) -> None:
    parser = ConnectReplyParser(max_head=256)
    try:
        for chunk in [*chunks, b""]:
            if parser.feed(chunk) is not None:
                break
    except XcpConsoleError:
        pass
