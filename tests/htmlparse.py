"""A tiny HTML tree for assertions on pages (stdlib only; no BeautifulSoup needed)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from html.parser import HTMLParser

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Visible text, whitespace collapsed."""
        parts: list[str] = []
        self._collect(parts)
        return " ".join(" ".join(parts).split())

    def _collect(self, parts: list[str]) -> None:
        for child in self.children:
            if isinstance(child, str):
                parts.append(child)
            elif child.tag not in ("script", "style"):
                child._collect(parts)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self):
        for child in self.children:
            if isinstance(child, Element):
                yield child
                yield from child.iter()

    def find_all(self, tag: str | None = None, class_: str | None = None, **attrs: str):
        """Descendants matching a tag, a class and exact attribute values."""
        return [
            e
            for e in self.iter()
            if (tag is None or e.tag == tag)
            and (class_ is None or class_ in e.classes())
            and all(e.attrs.get(k.rstrip("_")) == v for k, v in attrs.items())
        ]

    def find(self, tag: str | None = None, class_: str | None = None, **attrs: str):
        """The first match, or None."""
        found = self.find_all(tag, class_, **attrs)
        return found[0] if found else None


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: bytes | str) -> Element:
    """The document tree of a response body."""
    builder = _Builder()
    builder.feed(html.decode("utf-8") if isinstance(html, bytes) else html)
    builder.close()
    return builder.root


def form_values(page: Element, form: Element | None = None) -> dict[str, str]:
    """Name → value of the inputs and textareas of a form.

    By default the first POST form of the page's content (<main>; the top bar has the
    sign-out form).
    """
    form = form or (page.find("main") or page).find("form", method="post")
    values: dict[str, str] = {}
    for e in form.iter():
        if e.tag == "input" and "name" in e.attrs:
            values[e.attrs["name"]] = e.attrs.get("value", "")
        elif e.tag == "textarea" and "name" in e.attrs:
            values[e.attrs["name"]] = e.text
    return values


def row_fields(**values: str) -> dict[str, str]:
    """Row values as the add/edit forms post them: `row.<column>`."""
    return {f"row.{name}": value for name, value in values.items()}
