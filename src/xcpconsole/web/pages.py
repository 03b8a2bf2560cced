"""HTML of our own pages: ``string.Template`` files under ``templates/`` with escaping.

Every value is HTML-escaped unless it is a :class:`Markup` (HTML rendered from a
template, or joined from such pieces).  No template engine dependency: the pages are
few and small.  Conditional or repeated parts are templates of their own (a fragment)
that the view renders or leaves out.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from functools import cache
from importlib import resources
from string import Template


class Markup(str):
    """A string that is already safe HTML."""


def escape(value: object) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value), quote=True)


@cache
def _template(name: str) -> Template:
    text = resources.files(__package__).joinpath("templates", name).read_text("utf-8")
    return Template(text)


def render(template: str, /, **values: object) -> Markup:
    return Markup(_template(template).substitute({k: escape(v) for k, v in values.items()}))


def fragment(template: str, /, **values: object) -> Markup:
    """An inline piece of a page: like :func:`render`, without the file's final newline."""
    return Markup(render(template, **values).removesuffix("\n"))


def join(parts: Iterable[object], sep: str = "") -> Markup:
    """Join pieces of HTML; any that is not :class:`Markup` is escaped."""
    return Markup(escape(sep).join(escape(p) for p in parts))


def page(title: str, body: Markup, *, host: str, user: str | None = None,
         csrf: str = "", head: Markup = Markup(""), body_class: str = "") -> str:
    user_box = render("user_box.html", user=user, csrf=csrf) if user else Markup("")
    return render("base.html", title=title, body=body, host=host, user_box=user_box,
                  head=head, body_class=body_class)
