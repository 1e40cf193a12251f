"""User text made safe for a medium: one line, a terminal, a Pillow drawing, Prefect markdown.

Prompts, file names, parameter values and error messages come from people (and from the
libraries they feed), and may hold anything: line breaks, tabs, right-to-left scripts, emoji,
zero-width and bidi control characters, terminal escape sequences, 100,000 characters. Every
place that shows such text somewhere other than a file of record (the results table, a grid's
JSON sidecar and ``report.html`` keep the text whole, escaped for HTML) goes through one of
these functions:

- ``one_line(text)``: line breaks and tabs as visible single-line marks ("a ⏎ b", "a ⇥ b").
- ``printable(text, limit=None)``: for a terminal: one line, no escape sequence (CSI, OSC,
  DCS...), no C0/C1 control character, no bidi override or isolate; ordinary Unicode (RTL
  letters, emoji, zero-width joiners) kept; cut to ``limit`` characters with "…". Print it
  without markup (rich: a ``Text``, or ``markup=False``): the text may hold ``[bold]``.
- ``printable_lines(text)``: a message of several lines, each ``printable``.
- ``drawable(text, limit=DRAW_LIMIT)``: for Pillow: ``printable`` with a cap on its length,
  so a layout engine never sees a line break (raqm fails on one) or a 100k-character string.
- ``markdown(text)``: for markdown a UI renders (Prefect artifacts): ``printable`` with HTML's
  special characters as entities and markdown's punctuation backslash-escaped.
- ``markdown_code_block(text)``: ``text`` (several lines) in a fence no line of it can close.
- ``shorten(text, limit)``: at most ``limit`` characters, the last one "…" when cut.

Each is linear in the length of the text.
"""

from __future__ import annotations

import re

LINE_BREAK = " ⏎ "  # what a line break (LF, CR, CRLF, VT, FF, NEL, U+2028/9 ...) shows as on one line
TAB = " ⇥ "  # what a tab shows as
ELLIPSIS = "…"
DRAW_LIMIT = 2000  # characters given to Pillow at most: far more than any grid line shows

# Escape sequences (ECMA-48): CSI (7- or 8-bit) ... final byte; OSC/DCS/SOS/PM/APC strings up to
# BEL or ST (or the end of the text: an unterminated one swallows what follows on a terminal);
# any other ESC, intermediates, final. The 8-bit string introducers (U+0090, U+009D...) are C1
# controls and go alone below: without them what follows is plain text (mis-decoded text has them).
_ESCAPES = re.compile(
    r"""
      (?:\x1b\[|\x9b) [\x30-\x3f]* [\x20-\x2f]* [\x40-\x7e]?              # CSI: colours, cursor moves, erase
    | \x1b[\]PX^_] .*? (?:\x07|\x1b\\|\x9c|\Z)                            # OSC (titles, links), DCS, SOS, PM, APC
    | \x1b [\x20-\x2f]* [\x30-\x7e]?                                      # nF / Fp / Fe / Fs escapes (ESC c: reset)
    """,
    re.VERBOSE | re.DOTALL,
)
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# what remains unsafe once escapes and line breaks are handled: C0, DEL, C1, bidi embeddings,
# overrides and isolates (they reorder what follows, also outside the text), lone surrogates
# (they cannot be encoded for a terminal or a font) and the BOM/zero-width no-break space
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def one_line(text: str) -> str:
    """``text`` on one line: each line break (CRLF counts as one) as " ⏎ ", each tab as " ⇥ "."""
    return _LINE_BREAKS.sub(LINE_BREAK, str(text)).replace("\t", TAB)


def shorten(text: str, limit: int | None) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and "…", ``limit`` characters in all."""
    text = str(text)
    if limit is None or len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS if limit > 0 else ""


def printable(text: str, limit: int | None = None) -> str:
    """``text`` safe to print on a terminal, on one line: no escape sequence, control or bidi control character.

    Ordinary Unicode stays (Arabic, Hebrew, emoji, zero-width joiners). ``limit``: at most that
    many characters, the last one "…" when cut. Print the result without markup.
    """
    text = str(text)
    cap = None if limit is None else 4 * limit + 64  # room for the escapes and controls that will go
    cut = cap is not None and len(text) > cap  # a 100k-character prompt is not cleaned whole to show 80 characters
    text = _UNSAFE.sub("", one_line(_ESCAPES.sub("", text[:cap] if cut else text)))
    if cut and limit > 0:
        return text[: limit - 1] + ELLIPSIS
    return shorten(text, limit)


def printable_lines(text: str, limit: int | None = None) -> str:
    """A message of several lines for a terminal: each line :func:`printable` (and cut to ``limit``)."""
    return "\n".join(printable(line, limit) for line in str(text).splitlines())


def drawable(text: str, limit: int | None = DRAW_LIMIT) -> str:
    """``text`` safe to hand to Pillow's text layout: ``printable``, at most ``limit`` characters."""
    return printable(text, limit)


# every character HTML or markdown gives a meaning to, and what stands for it in markdown text
_MARKDOWN = {
    "<": "&lt;",
    ">": "&gt;",
    "&": "&amp;",
    '"': "&quot;",
    "'": "&#39;",
    **{char: "\\" + char for char in "\\`*_{}[]()#+-.!|~=:$^"},
}
_MARKDOWN_SPECIAL = re.compile("[" + re.escape("".join(_MARKDOWN)) + "]")


def markdown(text: str, limit: int | None = None) -> str:
    """``text`` as literal text inside markdown (no HTML, link, emphasis, heading or list can start in it)."""
    return _MARKDOWN_SPECIAL.sub(lambda found: _MARKDOWN[found.group()], printable(text, limit))


def markdown_code_block(text: str) -> str:
    """``text`` (several lines) as a fenced code block that nothing in it can close; each line made printable."""
    lines = [printable(line) for line in str(text).splitlines()]
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([fence, *lines, fence])
