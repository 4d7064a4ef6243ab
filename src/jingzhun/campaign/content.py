"""Personalized content: each variant's subject and body rendered for one member.

Templates are Jinja2 in a :class:`~jinja2.sandbox.SandboxedEnvironment` (a template cannot
reach Python internals: ``{{ ''.__class__.__mro__ }}`` is refused) with ``StrictUndefined``
(a field the member does not have is an error, never an empty string in a sent email).
HTML templates are autoescaped: a product title or a name holding ``<script>`` arrives as
text. Every message has a text part; an HTML template's text part is derived from its HTML.

What a template sees::

    first_name, name       from the PII table ("" when unknown)
    user                   the member's profile traits (user.recency_days, user.monetary …)
    recommendations        [{item_id, title, category, price, reason, reason_text, url}], best first
    campaign               {name, variant, discount, category}
    unsubscribe_url        the one-click unsubscribe link ("" without [tracking] base_url)
    cart                   a triggered campaign's trigger items (a cart's), newest first:
                           [{item_id, title, category, price}]; [] otherwise
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from jingzhun.campaign.spec import CampaignSpec, Variant
from jingzhun.errors import InputError


@dataclass(frozen=True)
class Rendered:
    """One member's message."""

    variant: str
    subject: str | None
    text: str
    html: str | None


def _environment(autoescape: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


class Renderer:
    """The compiled templates of one campaign's variants.

    Raises
    ------
    InputError
        When a template does not compile: the message names the variant, the part and line.
    """

    def __init__(self, spec: CampaignSpec) -> None:
        self.spec = spec
        text_env, html_env = _environment(False), _environment(True)
        self._parts: dict[str, tuple[Any, Any, bool]] = {}
        self._variants = {v.name: v for v in spec.variants}
        for v in spec.variants:
            subject = _compile(text_env, v.subject, v, "subject") if v.subject else None
            env = html_env if v.html else text_env
            body = _compile(env, v.body or "", v, "template")
            self._parts[v.name] = (subject, body, v.html)

    def render(self, variant: str, context: dict[str, Any]) -> Rendered:
        """Render ``variant`` for one member.

        Raises
        ------
        InputError
            When the template uses a field the member does not have, or fails: naming the
            variant, the part, the line and the user.
        """
        subject, body, is_html = self._templates(variant, context)
        if is_html:
            return Rendered(variant, subject, html_to_text(body), body)
        return Rendered(variant, subject, body, None)

    def check(self, variant: str, context: dict[str, Any]) -> None:
        """Render ``variant``'s templates for one member and throw them away (what can fail
        in :meth:`render`, without deriving the text part)."""
        self._templates(variant, context)

    def _templates(self, variant: str, context: dict[str, Any]) -> tuple[str | None, str, bool]:
        subject_t, body_t, is_html = self._parts[variant]
        v = self._variants[variant]
        user = context.get("user_id", "?")
        subject = None
        if subject_t is not None:
            subject = _run(subject_t, context, v, "subject", user)
            subject = " ".join(subject.split())  # one header line
        return subject, _run(body_t, context, v, "template", user), is_html


def _compile(env: SandboxedEnvironment, source: str, v: Variant, part: str) -> Any:
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise InputError(
            f"variant {v.name!r} {part} line {exc.lineno}: {exc.message}",
            hint="fix the template (Jinja2 syntax)",
        ) from None


def _run(template: Any, context: dict[str, Any], v: Variant, part: str, user: str) -> str:
    try:
        return template.render(context)
    except TemplateError as exc:
        line = _line_of(exc)
        where = f" line {line}" if line else ""
        raise InputError(
            f"variant {v.name!r} {part}{where} for user {user!r}: {exc.message or exc}",
            hint="use only fields every member has (first_name, user.<trait>, recommendations …), "
            "or guard with {% if … is defined %}",
        ) from None
    except (ArithmeticError, ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"variant {v.name!r} {part} for user {user!r}: {exc}") from None


def _line_of(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


# -- HTML to text ---------------------------------------------------------------------------
# Written here because no dependency we carry does it (html2text is GPL and unmaintained):
# blocks become lines, links "text (url)", list items "- ", scripts and styles dropped.

_BLOCKS = {
    "p",
    "div",
    "br",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "table",
    "ul",
    "ol",
    "hr",
}


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self.skip += 1
        elif tag in _BLOCKS:
            self.out.append("\n")
            if tag == "li":
                self.out.append("- ")
        if tag == "a":
            self.href.append(dict(attrs).get("href"))
        if tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.out.append(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCKS and tag not in ("li", "br", "tr"):
            self.out.append("\n\n")
        if tag == "a" and self.href:
            href = self.href.pop()
            if href and not href.startswith(("#", "mailto:")):
                self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    """A readable plain-text version of an HTML email."""
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n"


__all__ = ["Rendered", "Renderer", "html_to_text"]
