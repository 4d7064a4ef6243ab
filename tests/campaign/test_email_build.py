"""The lean message builder writes what the standard library's would, for every kind of
message a campaign sends; what it cannot write exactly goes to the standard builder; nothing
in a member's data can add a header."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from jingzhun.campaign.channels.email import Outgoing, SmtpSender
from jingzhun.campaign.content import Rendered, html_to_text
from jingzhun.config import Settings

HTML = (
    "<html><body><p>Hi 安娜,</p><p>" + "long line without a break " * 12 + "</p><ul>"
    + "".join(f'<li><a href="https://shop.example/i/{i}?a=1&amp;b=2">Item {i}</a></li>' for i in range(5))
    + "</ul>\n.a line starting with a dot\nFrom the start of a line\ntrailing spaces   \n"
    "</body></html>"
)  # fmt: skip

CASES = {
    "ascii text": ("Spring picks", "Hi Ann,\nsee you\n", None),
    "chinese html": ("春季为您精选 Spring picks", html_to_text(HTML), HTML),
    "long ascii subject": ("A very long subject line " * 6, "x\n", None),
    "crlf and lone cr in the template": ("s", "one\r\ntwo\rthree", None),
    "emoji and line separators": ("🎉 新品", "a\u2028b 😀\n", "<p>\u2028 😀</p>"),
    "only non-ascii": ("春", "春" * 300, "<p>" + "春" * 300 + "</p>"),
    "dots and From lines": ("s", ".\n..\nFrom x\n", None),
    "empty subject and body": ("", "", None),
    "no subject": (None, "body\n", None),
}


def sender(**email: object) -> SmtpSender:
    settings = Settings.model_validate(
        {
            "email": {
                "from": "Shop 新闻 <news@shop.example>",
                "reply_to": "help@shop.example",
                **email,
            }
        }
    )
    return SmtpSender(settings.email)


def outgoing(subject: str | None, text: str, html: str | None, to: str = "ann.lee+x@mail.shop.example") -> Outgoing:  # fmt: skip
    return Outgoing(
        "u1",
        to,
        "<spring.0123abcd@shop.example>",
        Rendered("a", subject, text, html),
        "https://t.shop.example/t/u/spring?u=u1&s=AbC-_9",
    )


def parse(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


HEADERS = ("From", "To", "Subject", "Message-ID", "Reply-To", "List-Unsubscribe",
           "List-Unsubscribe-Post", "MIME-Version")  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_lean_builder_writes_what_the_standard_one_does(case: str) -> None:
    subject, text, html = CASES[case]
    s = sender()
    m = outgoing(subject, text, html)
    lean_bytes = s._lean.build(m)  # type: ignore[union-attr]
    assert lean_bytes is not None, "this message is one the lean builder takes"
    lean, standard = parse(lean_bytes), parse(s.build_standard(m))
    assert all(not part.defects for part in lean.walk()), [p.defects for p in lean.walk()]
    for name in HEADERS:
        assert str(lean[name]) == str(standard[name]), name
    assert lean.get_content_type() == standard.get_content_type()
    for kind in ("plain", "html"):
        a, b = lean.get_body((kind,)), standard.get_body((kind,))
        assert (a is None) == (b is None), kind
        if a is not None and b is not None:
            assert a.get_content() == b.get_content(), kind
            assert a.get_content_charset() == "utf-8"
    lines = lean_bytes.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    assert b"\n" not in lean_bytes.replace(b"\r\n", b""), "every line ends with CRLF"


def test_a_subject_that_looks_encoded_arrives_as_typed() -> None:
    # The standard builder writes "=?utf-8?q?x?=" as is, and a reader decodes it to "x";
    # the lean one encodes it, and the reader sees what the template wrote.
    typed = "=?utf-8?q?x?= off today"
    got = parse(sender()._lean.build(outgoing(typed, "x\n", None)))  # type: ignore[union-attr]
    assert str(got["Subject"]) == typed


@pytest.mark.parametrize(
    "subject",
    ["Hi\r\nBcc: evil@attacker.example", "Hi\nX-Injected: 1", "a\x00b", "=?utf-8?b?Cg==?="],
)
def test_nothing_in_a_subject_adds_a_header(subject: str) -> None:
    data = sender()._lean.build(outgoing(subject, "x\n", None))  # type: ignore[union-attr]
    got = parse(data)
    assert got["Bcc"] is None and got["X-Injected"] is None
    # (the renderer makes a subject one line; a reader shows a line break in it as a space)
    assert str(got["Subject"]).split() == subject.split()
    head = data.split(b"\r\n\r\n", 1)[0]
    assert [line.split(b":")[0] for line in head.split(b"\r\n") if not line[:1].isspace()] == [
        b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Reply-To", b"List-Unsubscribe",
        b"List-Unsubscribe-Post", b"MIME-Version", b"Content-Type", b"Content-Transfer-Encoding",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "to", ["用户@example.com", '"ann lee"@shop.example', "ann@例子.测试", "a..b@x.example"]
)
def test_an_address_the_lean_builder_does_not_take_goes_to_the_standard_one(to: str) -> None:
    s = sender()
    m = outgoing("Hi", "x\n", None, to=to)
    assert s._lean.build(m) is None  # type: ignore[union-attr]
    try:
        expected = s.build_standard(m)
    except ValueError:
        with pytest.raises(ValueError):
            s.build(m)
    else:
        assert parse(s.build(m))["To"] == parse(expected)["To"]


def test_a_from_the_lean_builder_cannot_fold_sends_everything_the_standard_way() -> None:
    s = sender(unsubscribe_mailto="un sub@shop.example")
    assert s._lean is None
    assert parse(s.build(outgoing("Hi", "x\n", None)))["Subject"] == "Hi"


def test_each_message_has_its_own_boundary_and_a_seven_bit_body_never_holds_it() -> None:
    s = sender()
    built = [s._lean.build(outgoing("s", "plain ascii\n", "<p>ascii</p>")) for _ in range(50)]  # type: ignore[union-attr]
    boundaries = {parse(b).get_boundary() for b in built}  # type: ignore[arg-type]
    assert len(boundaries) == 50
    for data, boundary in zip(built, [parse(b).get_boundary() for b in built], strict=True):  # type: ignore[arg-type]
        assert data.count(b"--" + boundary.encode()) == 3  # two parts and the end
