"""Our decoders against TigerVNC's Xvnc: every encoding must reproduce the known picture.

The root window shows :func:`peerutil.busy_picture`; Raw is checked against the
picture itself, every other encoding against Raw (so a fixture problem cannot
masquerade as a decoder bug), and the statistics prove the server really used
the encoding we forced (servers silently fall back to Raw otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest
from peerutil import XVNC_PASSWORD, Xvnc, busy_picture, mean_abs_error, need

from xcpconsole.errors import AuthError
from xcpconsole.net.vnc import encoding_name, open_vnc, parse_encodings
from xcpconsole.rfb.constants import Encoding, SecurityType
from xcpconsole.rfb.pixelformat import RGB565

pytestmark = pytest.mark.peers

LOSSLESS = ["raw", "rre", "hextile", "zrle", "tight"]


async def _shot(target: str, encodings: str, **kw: object) -> tuple[np.ndarray, dict[int, int]]:
    async with await open_vnc(target, encodings=encodings, **kw) as vnc:  # type: ignore[arg-type]
        img = await vnc.screenshot()
        return img, {e: n for e, n in vnc.stats.rects.items() if e >= 0}  # no pseudo-encodings


@pytest.fixture(scope="module")
def raw_shot(xvnc: Xvnc) -> np.ndarray:
    img, rects = asyncio.run(_shot(xvnc.target, "raw"))
    assert set(rects) == {Encoding.RAW}
    return img


def test_raw_is_the_picture(xvnc: Xvnc, raw_shot: np.ndarray) -> None:
    assert xvnc.picture is not None
    assert raw_shot.shape == (768, 1024, 3)
    diff = np.argwhere((raw_shot != xvnc.picture).any(axis=2))
    assert diff.size == 0, f"{len(diff)} pixels differ, first at {diff[:3].tolist()}"


@pytest.mark.parametrize("name", LOSSLESS[1:])
async def test_lossless_encoding_equals_raw(xvnc: Xvnc, raw_shot: np.ndarray, name: str) -> None:
    img, rects = await _shot(xvnc.target, name)
    wanted = parse_encodings(name)[0]
    assert rects.get(wanted, 0) > 0, f"server did not use {name}: {rects}"
    diff = np.argwhere((img != raw_shot).any(axis=2))
    assert diff.size == 0, f"{name}: {len(diff)} pixels differ, first at {diff[:3].tolist()}"


async def test_tight_jpeg_is_close(xvnc: Xvnc, raw_shot: np.ndarray) -> None:
    img, rects = await _shot(xvnc.target, "tight,jpeg=6")
    assert rects.get(Encoding.TIGHT, 0) > 0
    err = mean_abs_error(img, raw_shot)
    assert 0 < err < 8, f"mean abs error {err:.2f}"  # > 0: JPEG really was used


async def test_default_choice_is_lossless(xvnc: Xvnc, raw_shot: np.ndarray) -> None:
    async with await open_vnc(xvnc.target) as vnc:
        img = await vnc.screenshot()
        used = {encoding_name(e) for e in vnc.stats.rects if e >= 0}
    assert used <= {"Tight", "CopyRect"}, used
    assert (img == raw_shot).all()


@pytest.mark.parametrize("name", LOSSLESS)
async def test_16bpp(xvnc: Xvnc, raw_shot: np.ndarray, name: str) -> None:
    """RGB 5-6-5: every encoding equals Raw at 16 bpp; that is the picture, quantised."""
    img16, rects = await _shot(xvnc.target, name, pixel_format=RGB565)
    ref16, _ = await _shot(xvnc.target, "raw", pixel_format=RGB565)
    assert rects.get(parse_encodings(name)[0], 0) > 0, rects
    assert (img16 == ref16).all(), f"{name}: {(img16 != ref16).any(axis=2).sum()} pixels differ"
    err = np.abs(ref16.astype(int) - raw_shot.astype(int)).max(axis=(0, 1))
    assert err[0] <= 8 and err[1] <= 4 and err[2] <= 8, err.tolist()
    assert len(np.unique(ref16[..., 0])) <= 32


async def test_copyrect_when_a_window_moves(xvnc_factory) -> None:  # type: ignore[no-untyped-def]
    """Move an xterm while watching with CopyRect+Raw; the incremental frame must equal a
    fresh Raw screenshot from a second connection."""
    server: Xvnc = xvnc_factory(picture=busy_picture(seed=3))
    server.spawn_x(need("xterm"), "-geometry", "40x12+50+60", "-bg", "navy", "-fg", "yellow",
                   "-e", "sh", "-c", "echo copyrect test; ls /; sleep 600")
    async with await open_vnc(server.target, encodings="copyrect,raw") as vnc:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while server.run_x(need("xdotool"), "search", "--class", "xterm").returncode != 0:
            assert loop.time() < deadline, "xterm window never appeared"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # let xterm draw its text before the first frame
        await vnc.screenshot()
        moves = iter(range(1, 50))
        while vnc.stats.rects.get(Encoding.COPYRECT, 0) == 0:
            assert loop.time() < deadline, f"no CopyRect seen: {vnc.stats.rects}"
            i = next(moves)
            server.run_x(need("xdotool"), "search", "--class", "xterm", "windowmove",
                         str(50 + 37 * i), str(60 + 23 * i))
            with contextlib.suppress(Exception):
                await vnc.update(incremental=True, timeout=1.0)
        # settle: keep asking until the incremental view matches a fresh Raw frame
        for _ in range(30):
            ref, _ = await _shot(server.target, "raw")
            with_copies = vnc.framebuffer
            if (with_copies == ref).all():
                break
            with contextlib.suppress(Exception):
                await vnc.update(incremental=True, timeout=0.3)
        assert (with_copies == ref).all(), f"{(with_copies != ref).any(axis=2).sum()} differ"


async def test_vnc_auth_right_password(xvnc_auth: Xvnc) -> None:
    async with await open_vnc(xvnc_auth.target, password=XVNC_PASSWORD,
                              encodings="zrle") as vnc:
        assert vnc.security_type == SecurityType.VNC_AUTH
        img = await vnc.screenshot()
    assert xvnc_auth.picture is not None
    assert (img == xvnc_auth.picture).all()


@pytest.mark.parametrize("password", ["wrong", None, ""])
async def test_vnc_auth_refused(xvnc_auth: Xvnc, password: str | None) -> None:
    with pytest.raises(AuthError) as info:
        await open_vnc(xvnc_auth.target, password=password)
    if password:
        assert password not in str(info.value)
