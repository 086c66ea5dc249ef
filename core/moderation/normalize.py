"""Normalisation: the forms of a text that the moderation layers read.

A rule or a classifier only sees what it was written or trained for, so every text is first
brought to plain lower-case Latin: Unicode NFKC (fullwidth and styled letters), look-alike
letters from other scripts folded to the Latin ones they imitate (Unicode's confusables,
from `confusable-homoglyphs`), invisible characters dropped (zero-width, soft hyphen, bidi
controls), white space collapsed, and letters spelled out one at a time (`k.i.l.l`,
`k i l l`) joined again. Two further readings are added when the text carries them:
leetspeak undone (`k1ll`, `b0mb`) and encoded payloads decoded (base64, hex, rot13), so
that a request hidden in either is checked too.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from functools import cache

from confusable_homoglyphs import utils as confusable_data

#: Format characters (zero-width joiners and spaces, soft hyphen, bidi controls, BOM) carry
#: no visible letter; they only break up words.
_INVISIBLE = re.compile(
    r"[\u00ad\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)
_SPACES = re.compile(r"\s+")
#: A word spelled out one character at a time: single characters with separators between
#: them (`k.i.l.l`, `s.o.m.e.o.n.e.'.s`, `y.e.a.r.s.,`), or three or more single letters
#: with one space between each (`b o m b`). Joined when it holds two letters or more.
_SPELLED = re.compile(
    r"(?<!\S)(?:[^\s._\-*/|+~][._\-*/|+~]+)+[^\s._\-*/|+~]?(?!\S)|(?<!\S)(?:[a-z] ){2,}[a-z](?!\S)"
)
_SEPARATORS = re.compile(r"[ ._\-*/|+~]")
#: A text is read as leetspeak when a word has a digit or sign between two letters (`k1ll`,
#: `b0mb`, `n31ghb0r`); a quantity (`400g`, `14th`), a code (`x1234567`) or a version
#: (`base64`) has none. Then the whole text is read with every such character as a letter.
_LEET_SIGN = re.compile(r"[a-z][0134578@$!|]+[a-z]")
#: E-mail addresses (their `@` is not an `a`) and long runs, which are an encoded payload
#: read decoded instead, are kept as they are.
_KEEP = re.compile(r"\S*[\w.+-]@[\w-]+\.\S*|\S{16,}")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b",
                       "@": "a", "$": "s", "!": "i", "|": "l"})  # fmt: skip
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_HEX = re.compile(r"\b(?:[0-9a-fA-F]{2}[ :]?){8,}\b")
#: A text that names rot13 (or a Caesar shift) is read decoded too, also when the rest of it
#: is plain English.
_ROT13_NAMED = re.compile(r"\b(rot ?-? ?13|caesar)\b")
#: Words that almost every English request has; a rot13 reading is kept only when it has
#: three or more of them, and more than the text itself.
_COMMON = frozenset(
    [
        "the",
        "a",
        "an",
        "to",
        "of",
        "and",
        "how",
        "i",
        "you",
        "is",
        "in",
        "it",
        "for",
        "me",
        "my",
        "what",
        "can",
        "do",
        "make",
        "with",
        "on",
        "this",
        "that",
        "be",
        "are",
        "your",
        "give",
        "tell",
        "write",
    ]
)


@cache
def _confusables() -> dict[int, str]:
    """Each non-ASCII character that imitates a Latin letter, to that letter."""
    table: dict[int, str] = {}
    for char, glyphs in confusable_data.load("confusables.json").items():
        if len(char) != 1 or char.isascii():
            continue
        latin = [
            g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalpha()
        ]
        if latin:
            table[ord(char)] = latin[0].lower()
    return table


def normalise(text: str) -> str:
    """One canonical reading: NFKC, look-alikes folded, invisible marks gone, lower case,
    white space collapsed, spelled-out letters joined."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = text.translate(_confusables()).lower()
    text = _SPACES.sub(" ", text).strip()
    return _join_spelled(text)


def readings(text: str) -> list[str]:
    """The normalised text, then each other reading it hides (leetspeak undone, decoded
    payloads), without repeats; the first is always the normalised text."""
    plain = normalise(text)
    found = [plain]
    unleet = _unleet(plain)
    if unleet != plain:
        found.append(_join_spelled(unleet))
    found.extend(normalise(decoded) for decoded in _decoded(text))
    rot = codecs.decode(plain, "rot13")
    rot_common = _common_words(rot)
    if _ROT13_NAMED.search(plain) or (rot_common >= 3 and rot_common > _common_words(plain)):
        found.append(rot)
    return list(dict.fromkeys(r for r in found if r))


def _join_spelled(text: str) -> str:
    def join(match: re.Match[str]) -> str:
        word = match.group()
        return _SEPARATORS.sub("", word) if sum(c.isalpha() for c in word) >= 2 else word

    return _SPELLED.sub(join, text)


def _unleet(text: str) -> str:
    if not _LEET_SIGN.search(_KEEP.sub(" ", text)):
        return text
    kept = [(m.start(), m.end()) for m in _KEEP.finditer(text)]
    out, last = [], 0
    for start, end in kept:
        out += [text[last:start].translate(_LEET), text[start:end]]
        last = end
    return "".join([*out, text[last:].translate(_LEET)])


def _decoded(text: str) -> list[str]:
    """Base64 and hex runs that decode to readable text."""
    out: list[str] = []
    for match in _BASE64.finditer(text):
        token = match.group()
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        out.extend(_readable(raw))
    for match in _HEX.finditer(text):
        try:
            raw = bytes.fromhex(re.sub(r"[ :]", "", match.group()))
        except ValueError:
            continue
        out.extend(_readable(raw))
    return out


def _readable(raw: bytes) -> list[str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return []
    printable = sum(c.isprintable() or c.isspace() for c in text)
    has_words = sum(c.isalpha() for c in text) >= len(text) / 2
    return [text] if text and printable == len(text) and has_words else []


def _common_words(text: str) -> int:
    return sum(word in _COMMON for word in re.findall(r"[a-z]+", text))
