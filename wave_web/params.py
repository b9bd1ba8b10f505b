"""Small parsers for ids and page numbers typed into URLs and forms."""

from __future__ import annotations

from flask import request

from wave_web.errors import bad_request

MAX_ID = 2**31 - 1  # INTEGER primary keys; a larger number can name no row
MAX_PAGE = 1_000_000
MAX_SEARCH = 200  # characters of a list's search text
MAX_TAG_FILTER = 100  # a tag name (tags are at most 100 characters)


def parse_id(raw: str | None) -> int | None:
    """A row id (1 to 2**31-1) written in ASCII digits, else None.

    `str.isdigit` is not enough: it accepts "²" and "٣", which int() refuses or reads.
    """
    if not raw or len(raw) > len(str(MAX_ID)) or not raw.isascii():
        return None
    if not raw.isdigit():
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_ID else None


def page_arg(name: str = "page") -> int:
    """A 1-based page number from the query string; anything else is a 400."""
    raw = request.args.get(name, "1")
    page = parse_id(raw)
    if page is None or page > MAX_PAGE:
        raise bad_request(f"The page number “{raw[:20]}” is not valid; use 1, 2, 3 …")
    return page


def text_arg(name: str, limit: int, what: str) -> str:
    """Trimmed text from the query string; longer than `limit` is a 400, never cut."""
    text = request.args.get(name, "").strip()
    if len(text) > limit:
        raise bad_request(
            f"{what} has at most {limit} characters; this one has {len(text):,}. "
            "Shorten it and search again."
        )
    return text
