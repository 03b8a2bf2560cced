"""HTML of our own pages: ``string.Template`` files under ``templates/`` with escaping.

Every value is HTML-escaped unless it is a :class:`Markup` (HTML we built ourselves from
escaped parts).  No template engine dependency: the pages are few and small.
"""

from __future__ import annotations

import html
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


def page(title: str, body: Markup, *, host: str, user: str | None = None,
         csrf: str = "", head: str = "", body_class: str = "") -> str:
    user_box = render("user_box.html", user=user, csrf=csrf) if user else Markup("")
    return render("base.html", title=title, body=body, host=host, user_box=user_box,
                  head=Markup(head), body_class=body_class)
