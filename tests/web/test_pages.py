"""Our HTML templates: values are escaped, fragments are inline, Markup passes through."""

from __future__ import annotations

from xcpconsole.web.pages import Markup, escape, fragment, join, page, render


def test_values_escaped_in_fragments() -> None:
    html = fragment("login_error.html", message='<script>alert("x")</script> & co')
    assert html == ('<p class="error" id="login-error">'
                    "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co</p>")
    link = fragment("vm_console_link.html", protocol='rfb" onclick="x', href="/a?b=1&c=<2>",
                    label="beta <b>")
    assert 'onclick="x' not in link and "<b>" not in link
    assert 'href="/a?b=1&amp;c=&lt;2&gt;"' in link and ">beta &lt;b&gt;</a>" in link
    assert fragment("vm_thumbnail.html", src='x" onerror="y').count('"') == 8


def test_fragments_have_no_trailing_newline() -> None:
    for name in ("login_error.html", "vm_thumbnail.html", "vms_empty.html",
                 "console_vt100_head.html"):
        out = fragment(name, message="m", src="s")
        assert isinstance(out, Markup) and not out.endswith("\n"), name


def test_join_escapes_what_is_not_markup() -> None:
    assert join([Markup("<i>a</i>"), "<b>"], " ") == "<i>a</i> &lt;b&gt;"
    assert join([]) == ""


def test_page_head_and_body_are_markup_only() -> None:
    head = fragment("console_vt100_head.html")
    text = page("t <x>", render("vms_empty.html"), host="h", head=head)
    assert '<link rel="stylesheet" href="/static/vendor/xterm/css/xterm.css">' in text
    assert "<title>t &lt;x&gt;</title>" in text
    assert '<p class="empty">No virtual machines visible.</p>' in text
    # A plain string given as head is text, not HTML.
    assert "&lt;script&gt;" in page("t", Markup(""), host="h",
                                    head="<script>x</script>")  # type: ignore[arg-type]
    assert escape(Markup("<ok>")) == "<ok>"
