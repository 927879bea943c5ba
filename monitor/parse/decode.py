"""Decoding a feed body once, for every reader: BOMs, valid UTF-8, the XML declaration,
the HTTP charset, then detection; labels widened to the charsets servers really send."""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass

# Labels that name a subset of what servers really send: GB2312/GBK pages routinely hold
# GBK or GB18030 characters, Big5 pages hold HKSCS/cp950 ones (the WHATWG encoding
# standard maps the labels the same way). Decoding with the superset loses nothing.
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "big5": "big5hkscs",
    "ascii": "utf-8",  # "us-ascii" bodies are very often UTF-8 in practice
    "iso8859_1": "cp1252",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
}
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# "<?" in UTF-16/32 without a BOM (XML 1.0 appendix F).
_BOMLESS = (
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
)
_XML_DECL_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)""")
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)


def _codec(label: str) -> str | None:
    """Python codec name for a charset label, widened to its superset; None if unknown."""
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except LookupError:
        return None
    wider = _SUPERSETS.get(name.replace("-", "_"))
    return codecs.lookup(wider).name if wider else name


def header(headers: Mapping[str, str], name: str) -> str:
    """The value of header ``name`` (lower case) in ``headers`` of any case; "" if absent."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


@dataclass(slots=True)
class Decoded:
    """A body as text, the codec that read it, and what did not fit on the way."""

    text: str
    encoding: str
    warnings: list[str]


# Codecs whose byte ranges overlap so much that a wrong one decodes without error.
_CJK = ("gb18030", "big5hkscs", "cp949", "cp932", "euc_jp")


def _detect(body: bytes, among: tuple[str, ...] | None = None) -> str | None:
    """Best-guess codec (charset-normalizer, a requests dependency); None if no guess.

    Reads at most 64 KB: a feed's first items say enough about its charset.
    """
    from charset_normalizer import from_bytes  # imported late: rarely needed

    best = from_bytes(body[:65536], cp_isolation=list(among) if among else None).best()
    return _codec(best.encoding) if best is not None else None


def _declared(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """Charsets the body claims, most trusted first: (label as sent, codec or "")."""
    out: list[tuple[str, str]] = []
    decl = _XML_DECL_ENCODING.match(body[:512])
    if decl:
        label = decl[1].decode("ascii")
        out.append((label, _codec(label) or ""))
    charset = _CHARSET.search(content_type)
    if charset and all(charset[1].lower() != label.lower() for label, _ in out):
        out.append((charset[1], _codec(charset[1]) or ""))
    return out


def decode_body(body: bytes, content_type: str = "") -> Decoded:
    """Decode a feed body: BOM, else UTF-8 if valid, else the XML declaration, else the
    HTTP charset, else detection. The first candidate that decodes without error wins,
    so a body mislabelled by its server (UTF-8 sent as GB2312, say) still reads right."""
    warnings: list[str] = []
    for bom, enc in _BOMS:
        if body.startswith(bom):
            try:
                return Decoded(body[len(bom) :].decode(enc), enc, warnings)
            except UnicodeDecodeError:
                warnings.append(f"invalid {enc} bytes replaced")
                return Decoded(body[len(bom) :].decode(enc, "replace"), enc, warnings)
    for prefix, enc in _BOMLESS:
        if body.startswith(prefix):
            return Decoded(body.decode(enc, "replace"), enc, warnings)

    # Valid UTF-8 first: bytes of any other multi-byte charset are almost never valid
    # UTF-8 by accident, while UTF-8 bodies under a server-wide "charset=gb2312" are common
    # (and GB18030 or Big5 would "decode" them into nonsense without an error). Then the
    # XML declaration, written by the software that wrote the text, before the HTTP header,
    # which is often a server default.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return Decoded(text, "utf-8", utf8_warnings(body, content_type))
    declared = _declared(body, content_type)
    for label, enc in declared:
        if not enc:
            warnings.append(f"unknown charset {label!r} ignored")
            continue
        try:
            text = body.decode(enc)
        except UnicodeDecodeError:
            warnings.append(f"declared charset {label!r} does not fit")
            continue
        if enc in _CJK and not _XML_DECL_ENCODING.match(body[:512]):
            # Only the HTTP header speaks, and the CJK double-byte charsets decode each
            # other's bytes without error (Big5 read as GBK is nonsense, not an error):
            # let the detector choose among them.
            guess = _detect(body, _CJK)
            if guess and guess != enc:
                warnings.append(f"declared charset {label!r} does not fit; detected {guess}")
                return Decoded(body.decode(guess, "replace"), guess, warnings)
        warnings.extend(
            f"declared charset {other!r} does not fit; read as {enc}"
            for other, other_enc in declared
            if other_enc not in ("", enc) and f"{other!r} does not fit" not in " ".join(warnings)
        )
        return Decoded(text, enc, warnings)

    # Nothing declared fits: guess, which tells the CJK encodings apart far better than
    # feedparser's cp1252 last resort.
    guess = _detect(body)
    if guess:
        warnings.append(f"no declared charset fits; detected {guess}")
        return Decoded(body.decode(guess, "replace"), guess, warnings)
    warnings.append("undecodable bytes replaced")
    return Decoded(body.decode("utf-8", "replace"), "utf-8", warnings)


def utf8_warnings(body: bytes, content_type: str) -> list[str]:
    """``decode_body``'s warnings for a body that is valid UTF-8."""
    if body.isascii():
        return []
    wrong = [label for label, enc in _declared(body, content_type) if enc and enc != "utf-8"]
    return [f"declared charset {wrong[0]!r} does not fit; read as utf-8"] if wrong else []


_UNICODE_PREFIXES = tuple(bom for bom, _ in _BOMS) + tuple(prefix for prefix, _ in _BOMLESS)


def utf8_as_is(body: bytes) -> bool:
    """Whether ``decode_body`` reads ``body`` as UTF-8 and ``_utf8_xml`` hands it to lxml as
    it is, provided it is valid UTF-8: no BOM, and an XML declaration naming UTF-8 or none."""
    if body.startswith(_UNICODE_PREFIXES):
        return False
    m = _XML_DECL_ENCODING.match(body[:512])
    return m is None or _codec(m[1].decode("ascii")) == "utf-8"


def _utf8_xml(body: bytes, decoded: Decoded) -> bytes:
    """The body as UTF-8 without a conflicting XML declaration."""
    if decoded.encoding == "utf-8" and not body.startswith(codecs.BOM_UTF8):
        m = _XML_DECL_ENCODING.match(body[:512])
        if m is None or _codec(m[1].decode("ascii")) == "utf-8":
            return body  # the common case: no copy
    return _XML_DECL.sub("", decoded.text, count=1).encode("utf-8")


def prepare(body: bytes, headers: Mapping[str, str]) -> tuple[Decoded, bytes, str]:
    """The decoded body, the same as UTF-8 bytes for lxml, and the Content-Type."""
    content_type = header(headers, "content-type")
    decoded = decode_body(body, content_type)
    return decoded, _utf8_xml(body, decoded), content_type
