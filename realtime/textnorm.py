"""The form in which banned words and comments are compared."""

from __future__ import annotations

import unicodedata


def _drop_format(text: str) -> str:
    # Format characters (category Cf: zero-width space and joiners, soft hyphen, bidi
    # marks...) are invisible, so they are removed rather than allowed to split a word.
    # ASCII has none. (Asked per character of the comment rather than from a table of all
    # 1.1 million code points: building that table cost every process 80 ms at start.)
    if text.isascii():
        return text
    category = unicodedata.category
    return "".join(ch for ch in text if category(ch) != "Cf")


def normalize(text: str) -> str:
    """Compatibility forms folded (NFKC: full-width letters are ASCII), case folded,
    format characters removed; NFKC again because case folding can undo it."""
    text = unicodedata.normalize("NFKC", _drop_format(text))
    return unicodedata.normalize("NFKC", text.casefold())
