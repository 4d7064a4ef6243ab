"""Templates: sandboxed, escaped, strict about missing fields; text derived from HTML."""

from __future__ import annotations

import pytest

from jingzhun.campaign.content import Renderer, html_to_text
from jingzhun.campaign.spec import CampaignSpec
from jingzhun.errors import InputError


def spec(body: str, subject: str = "Hi {{ first_name }}", fmt: str = "text") -> CampaignSpec:
    return CampaignSpec.model_validate(
        {
            "name": "t",
            "channel": "email",
            "variants": [{"name": "a", "subject": subject, "body": body, "format": fmt}],
        }
    )


CTX = {
    "user_id": "u1",
    "first_name": "<b>Ann</b>",
    "name": "Ann Lee",
    "user": {"recency_days": 3.0, "monetary": 120.5},
    "recommendations": [{"title": "Tea & <Cups>", "item_id": "i1", "reason_text": "popular"}],
    "unsubscribe_url": "https://t.example/u?x=1&y=2",
}


def test_html_is_escaped_and_the_text_part_derived() -> None:
    r = Renderer(
        spec(
            "<p>Hi {{ first_name }}</p><ul>{% for i in recommendations %}<li>"
            "<a href='https://s.example/{{ i.item_id }}'>{{ i.title }}</a></li>{% endfor %}</ul>"
            "<style>p{color:red}</style>",
            fmt="html",
        )
    ).render("a", CTX)
    assert "&lt;b&gt;Ann&lt;/b&gt;" in r.html and "Tea &amp; &lt;Cups&gt;" in r.html
    assert r.text == "Hi <b>Ann</b>\n\n- Tea & <Cups> (https://s.example/i1)\n"
    assert "color" not in r.text
    # The subject is text, on one line, never escaped.
    assert r.subject == "Hi <b>Ann</b>"


def test_text_templates_are_not_escaped() -> None:
    r = Renderer(spec("Dear {{ name }}, you spent {{ user.monetary }}.\n")).render("a", CTX)
    assert r.html is None and r.text == "Dear Ann Lee, you spent 120.5.\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("Hello {{ favourite_colour }}", "'favourite_colour' is undefined"),
        ("Spent {{ user.lifetime_value }}", "has no attribute 'lifetime_value'"),
        ("line1\n{{ recommendations[5].title }}", "line 2"),
    ],
)
def test_a_missing_field_fails_naming_variant_line_and_user(body: str, message: str) -> None:
    with pytest.raises(InputError) as exc:
        Renderer(spec(body)).render("a", CTX)
    text = str(exc.value)
    assert "variant 'a' template" in text and "user 'u1'" in text and message in text


def test_syntax_errors_fail_when_compiled() -> None:
    with pytest.raises(InputError, match=r"variant 'a' template line 2: .*"):
        Renderer(spec("ok\n{% for x in %}"))
    with pytest.raises(InputError, match="variant 'a' subject line 1"):
        Renderer(spec("ok", subject="{{ oops "))


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ user.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ (1).__class__.__base__.__subclasses__() }}",
    ],
)
def test_the_sandbox_refuses_python_internals(body: str) -> None:
    with pytest.raises(InputError):
        Renderer(spec(body)).render("a", CTX)


def test_html_to_text() -> None:
    html = (
        "<html><head><title>x</title></head><body><h1>Title</h1><p>One&nbsp;two &amp; three</p>"
        "<ul><li>a</li><li>b</li></ul><img alt='logo'><a href='#top'>top</a>"
        "<script>alert(1)</script></body></html>"
    )
    assert html_to_text(html) == "Title\n\nOne two & three\n\n- a\n- b\n\nlogotop\n"
