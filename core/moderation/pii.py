"""Personal data in a message: found, checked, and replaced by typed placeholders.

A user who shares their own e-mail or card number still gets an answer; what is stored and
published (workflow history, transcript, events) carries `[EMAIL]`, `[CARD_NUMBER]`... in
its place. Candidates are found by pattern and kept only when they validate, so an order
number is not taken for a card: card numbers pass the Luhn check, IBANs their mod-97 check
(`python-stdnum`), phone numbers Google's libphonenumber rules (`phonenumbers`), IP
addresses `ipaddress`, and national ids their own check digits where they have one.

Every pattern repeats a bounded number of times and an e-mail address can only start where
a run of its characters starts, so a search takes time linear in the text, whatever it
holds (`"a." * 30000 + "@"` took seconds with an unbounded local part); the API redacts
off its event loop all the same (api/session_workflow.py).
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from stdnum import iban, luhn
from stdnum.es import dni
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.us import ssn

#: The kinds a policy may ask to redact (its `pii.redact`), each with its placeholder.
PiiKind = Literal["email", "card_number", "iban", "national_id", "ip_address", "phone"]
PLACEHOLDERS: dict[PiiKind, str] = {
    "email": "[EMAIL]",
    "card_number": "[CARD_NUMBER]",
    "iban": "[IBAN]",
    "national_id": "[NATIONAL_ID]",
    "ip_address": "[IP_ADDRESS]",
    "phone": "[PHONE]",
}

#: Regions tried for numbers written without a country code.
_PHONE_REGIONS = ("US", "GB", "DE", "FR")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: PiiKind


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _any(_: str) -> bool:
    return True


def _is_card(text: str) -> bool:
    return luhn.is_valid(re.sub(r"\D", "", text))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


#: Each kind's patterns, in the order a contested span is given, with what validates a match.
#: National ids: US social security numbers, UK national insurance numbers (format only:
#: they carry no check digit), Spanish DNI, French NIR and Italian codice fiscale.
_PATTERNS: list[tuple[PiiKind, re.Pattern[str], Callable[[str], bool]]] = [
    # RFC 5321: a local part of at most 64 characters, domain labels of at most 63.
    (
        "email",
        re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}\b"),
        _any,
    ),
    ("card_number", re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"), _is_card),
    (
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
        iban.is_valid,
    ),
    ("national_id", re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), ssn.is_valid),
    (
        "national_id",
        re.compile(r"\b(?![DFIQUV])[A-Z](?![DFIOQUV])[A-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
        _any,
    ),
    ("national_id", re.compile(r"\b\d{8}-?[A-Z]\b"), dni.is_valid),
    (
        "national_id",
        re.compile(r"\b[12] ?\d{2} ?\d{2} ?\d{2} ?\d{3} ?\d{3} ?\d{2}\b"),
        nir.is_valid,
    ),
    (
        "national_id",
        re.compile(r"\b[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]\b", re.IGNORECASE),
        codicefiscale.is_valid,
    ),
    ("ip_address", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), _is_ip),
    # IPv6, full or compressed: a run of hex digits and colons, at most 39 long, that
    # `ipaddress` accepts.
    (
        "ip_address",
        re.compile(r"(?<![0-9a-f:])(?=[0-9a-f]*:[0-9a-f]*:)[0-9a-f:]{2,39}(?![0-9a-f:])", re.I),
        _is_ip,
    ),
]


def _phones(text: str) -> Iterable[Span]:
    seen: set[tuple[int, int]] = set()
    for region in _PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            if (match.start, match.end) not in seen and phonenumbers.is_valid_number(match.number):
                seen.add((match.start, match.end))
                yield Span(match.start, match.end, "phone")


def find(text: str, kinds: Iterable[PiiKind] = PLACEHOLDERS) -> list[Span]:
    """The personal data in `text` of the given kinds, without overlaps (the first kind in
    PLACEHOLDERS' order wins a contested span)."""
    wanted = set(kinds)
    found = [
        Span(match.start(), match.end(), kind)
        for kind, pattern, valid in _PATTERNS
        if kind in wanted
        for match in pattern.finditer(text)
        if valid(match.group())
    ]
    if "phone" in wanted:
        found.extend(_phones(text))
    taken: list[Span] = []  # by start; none overlaps another
    for span in found:
        at = bisect.bisect(taken, span.start, key=lambda t: t.start)
        before_ends = at == 0 or taken[at - 1].end <= span.start
        if before_ends and (at == len(taken) or span.end <= taken[at].start):
            taken.insert(at, span)
    return taken


def redact_values(value: object, kinds: Iterable[PiiKind] = PLACEHOLDERS) -> object:
    """`value` (JSON: a string, a list, an object, a number...) with every string in it
    redacted, keys of objects too."""
    kinds = list(kinds)
    if isinstance(value, str):
        return redact(value, kinds)[0]
    if isinstance(value, list):
        return [redact_values(item, kinds) for item in value]
    if isinstance(value, dict):
        return {redact(str(k), kinds)[0]: redact_values(v, kinds) for k, v in value.items()}
    return value


def redact(text: str, kinds: Iterable[PiiKind] = PLACEHOLDERS) -> tuple[str, list[PiiKind]]:
    """`text` with each personal datum replaced by its placeholder, and the kinds replaced."""
    spans = find(text, kinds)
    out, last = [], 0
    for span in spans:
        out.append(text[last : span.start])
        out.append(PLACEHOLDERS[span.kind])
        last = span.end
    out.append(text[last:])
    return "".join(out), [span.kind for span in spans]
