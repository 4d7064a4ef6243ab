"""The quarantine page shows raw rows with personal data masked at any depth and in free
text, but for the field the row was refused for."""

from __future__ import annotations

import json

from jingzhun.web.pages.quarantine import raw_text


def test_personal_data_is_masked_wherever_it_is() -> None:
    line = raw_text(json.dumps({"_raw_line": "u1,alice@example.com,+86 138 0013 8000,x"}))
    assert "alice" not in line and "138 0013" not in line and "a•••@example.com" in line
    segment = raw_text(
        json.dumps({"type": "identify", "traits": {"email": "bob@x.cn", "name": "Bob Li",
                    "plan": "pro", "contact": {"phone": "13800138000"}}}),
    )  # fmt: skip
    assert "bob@" not in segment and "Bob Li" not in segment and "13800138000" not in segment
    assert '"plan": "pro"' in segment
    assert "carol" not in raw_text("not json carol@x.org")
    # what was refused is shown (it is what there is to fix); times and prices are not phones
    refused = raw_text(
        json.dumps({"email": "dave@", "ts": "2026-01-02 10:00:00", "price": "12345678",
                    "name": "Dave"}),
        "email: not an address",
    )  # fmt: skip
    assert "email: dave@" in refused and "2026-01-02 10:00:00" in refused
    assert "12345678" in refused and "Dave" not in refused
