"""Personal data is replaced by typed placeholders (core/moderation/pii.py), and no text makes
a pattern backtrack over it: `python -m bench pii` times that; here, what is found in such
texts is still right."""

from __future__ import annotations

import pytest

from core.moderation import pii


def test_personal_data_is_replaced_by_typed_placeholders() -> None:
    text = (
        "I'm jane.doe@example.com, card 4111 1111 1111 1111 (not 4111 1111 1111 1112), "
        "IBAN DE89 3704 0044 0532 0130 00, SSN 536-22-1234, call +44 20 7946 0958, "
        "my server is 203.0.113.7. Order 2024-118."
    )
    redacted, kinds = pii.redact(text, pii.PLACEHOLDERS)
    assert redacted == (
        "I'm [EMAIL], card [CARD_NUMBER] (not 4111 1111 1111 1112), "
        "IBAN [IBAN], SSN [NATIONAL_ID], call [PHONE], "
        "my server is [IP_ADDRESS]. Order 2024-118."
    )
    assert sorted(kinds) == sorted(
        ["email", "card_number", "iban", "national_id", "phone", "ip_address"]
    )
    assert pii.redact(text, ["email"])[0].startswith("I'm [EMAIL], card 4111 1111 1111 1111")


def test_ipv6_addresses_are_replaced_whole_compressed_or_not() -> None:
    text = "from fe80::1ff:fe23:4567:890a, 2001:db8:0:0:0:0:2:1 and ::1; not a:b or 12:30"
    assert pii.redact(text, ["ip_address"])[0] == (
        "from [IP_ADDRESS], [IP_ADDRESS] and [IP_ADDRESS]; not a:b or 12:30"
    )


@pytest.mark.parametrize(
    "unit", ["a.", "x@y.", "1 ", "1-", "1.", "a:", "AAAA ", "(555) "], ids=repr
)
def test_personal_data_beside_a_text_built_to_backtrack_is_still_found(unit: str) -> None:
    filler = unit * (30_000 // len(unit))
    text = f"{filler} write to jane.doe@example.com or 203.0.113.7 {filler}"
    redacted, _ = pii.redact(text, ["email", "ip_address"])
    assert " write to [EMAIL] or [IP_ADDRESS] " in redacted


def test_a_contested_span_goes_to_the_first_kind() -> None:
    # A card number's digits also read as a phone number: the card wins.
    assert pii.redact("card 4111 1111 1111 1111 ok") == ("card [CARD_NUMBER] ok", ["card_number"])


def test_an_e_mail_local_part_longer_than_64_characters_is_no_address() -> None:
    assert pii.redact("a" * 65 + "@example.com", ["email"]) == ("a" * 65 + "@example.com", [])
    assert pii.redact("a" * 64 + "@example.com", ["email"]) == ("[EMAIL]", ["email"])
