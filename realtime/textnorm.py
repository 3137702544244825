"""The form in which banned words and comments are compared."""

from __future__ import annotations

import sys
import unicodedata

# Format characters (category Cf: zero-width space and joiners, soft hyphen, bidi
# marks...) are invisible, so they are removed rather than allowed to split a word.
_DROP_FORMAT = {
    cp: None for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) == "Cf"
}


def normalize(text: str) -> str:
    """Compatibility forms folded (NFKC: full-width letters are ASCII), case folded,
    format characters removed; NFKC again because case folding can undo it."""
    text = unicodedata.normalize("NFKC", text.translate(_DROP_FORMAT))
    return unicodedata.normalize("NFKC", text.casefold())
