"""Grid <-> text codecs.

A codec is a small frozen value built from parts named in a spec string joined by
``+`` (no ``eval()``): ``"minimal"``, ``"shape+rownum+fence"``, ``"spaced+rownum"``.

parts
  ``digits``   one digit per cell, one line per row (always on; ``minimal`` = just this)
  ``spaced``   a space between cells            ``comma``  a comma between cells
  ``rownum``   each row starts with its 1-based number and a space
  ``shape``    a first line ``RxC`` (rows x columns)
  ``fence``    the grid sits between ``` lines

Every codec parses its own output back exactly (``decode(encode(g)) == g``) and its
parser is strict about the grid but tolerant after it: a model's answer may run on
with more text, which is ignored once the grid is complete. A line that starts like a
row but is not one (ragged, a non-digit cell, more than 30 rows or columns) is an
error, never silently trimmed.

SmolLM2 and Qwen2.5 tokenizers give each digit its own token, so ``minimal`` costs
one token per cell plus one per row (the newline): the lower bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ArcsubError
from .tasks import MAX_SIDE, Grid

_SEPARATORS = {"spaced": " ", "comma": ","}
_PARTS = ("digits", "spaced", "comma", "rownum", "shape", "fence")
PRESETS = {
    "minimal": "digits",
    "arc24": "shape+rownum+fence",  # the format of the 2024 3rd-place solution's family
}
DEFAULT_CODEC = "minimal"


class GridParseError(ValueError):
    """Model output that is not a grid in the codec's format (a normal outcome at
    inference: counted as unanswered, never a crash)."""


class UnknownCodecError(ArcsubError):
    pass


@dataclass(frozen=True)
class GridCodec:
    cell_sep: str = ""
    row_numbers: bool = False
    shape_header: bool = False
    fence: bool = False

    @property
    def name(self) -> str:
        parts = ["digits"]
        parts += [p for p, s in _SEPARATORS.items() if s == self.cell_sep]
        parts += [
            p for p, on in (("rownum", self.row_numbers), ("shape", self.shape_header), ("fence", self.fence)) if on
        ]
        return next((preset for preset, full in PRESETS.items() if get_codec(full) == self), "+".join(parts))

    # ------------------------------------------------------------ encode

    def encode_row(self, index: int, row: tuple[int, ...]) -> str:
        cells = self.cell_sep.join(str(c) for c in row)
        return f"{index + 1} {cells}" if self.row_numbers else cells

    def encode(self, grid: Grid) -> str:
        lines = []
        if self.fence:
            lines.append("```")
        if self.shape_header:
            lines.append(f"{len(grid)}x{len(grid[0])}")
        lines += [self.encode_row(i, row) for i, row in enumerate(grid)]
        if self.fence:
            lines.append("```")
        return "\n".join(lines)

    # ------------------------------------------------------------ decode

    def decode(self, text: str) -> Grid:
        """Parse the grid at the start of ``text`` (leading blank lines allowed);
        anything after the complete grid is ignored. Raises GridParseError."""
        lines = text.lstrip("\n").split("\n")
        pos = 0
        if self.fence:
            if not lines[0].strip().startswith("```"):
                raise GridParseError("expected an opening ``` line")
            pos = 1
        expected_rows = expected_cols = None
        if self.shape_header:
            if pos >= len(lines):
                raise GridParseError("missing the RxC shape line")
            match = re.fullmatch(r"\s*(\d+)x(\d+)\s*", lines[pos])
            if not match:
                raise GridParseError(f"expected a shape line like 3x4, got {lines[pos][:40]!r}")
            expected_rows, expected_cols = int(match.group(1)), int(match.group(2))
            if not (1 <= expected_rows <= MAX_SIDE and 1 <= expected_cols <= MAX_SIDE):
                raise GridParseError(f"shape {expected_rows}x{expected_cols} is outside 1..{MAX_SIDE}")
            pos += 1
        rows: list[tuple[int, ...]] = []
        tail = ""  # text after the last cell on the last row's line
        while pos < len(lines) and not tail:
            if expected_rows is not None and len(rows) == expected_rows:
                break
            line = lines[pos]
            if not line[:1].isdigit():
                break  # the grid ended; what follows is trailing text
            # Text right after a row's last cell (an end-of-turn marker, say) ends the grid.
            row, tail = self._decode_row(len(rows), line)
            rows.append(row)
            if len(rows) > MAX_SIDE:
                raise GridParseError(f"more than {MAX_SIDE} rows")
            pos += 1
        if not rows:
            raise GridParseError("no grid rows found")
        if expected_rows is not None and len(rows) != expected_rows:
            raise GridParseError(f"shape line says {expected_rows} rows, found {len(rows)}")
        width = len(rows[0])
        for i, row in enumerate(rows):
            if len(row) != width:
                raise GridParseError(f"row {i} has {len(row)} cells but row 0 has {width}")
        if expected_cols is not None and width != expected_cols:
            raise GridParseError(f"shape line says {expected_cols} columns, found {width}")
        closing = tail if tail else (lines[pos] if pos < len(lines) else "")
        if self.fence and not closing.strip().startswith("```"):
            raise GridParseError("missing the closing ``` line")
        return tuple(rows)

    def _decode_row(self, index: int, line: str) -> tuple[tuple[int, ...], str]:
        """One row, and any text after its last cell on the same line."""
        body = line.rstrip("\r ")
        if self.row_numbers:
            number, _, body = body.partition(" ")
            if number != str(index + 1):
                raise GridParseError(f"row {index} is numbered {number!r}, expected {index + 1}")
        match = self._row_pattern().match(body)
        if not match:
            raise GridParseError(f"row {index} is not a row of digits: {line[:40]!r}")
        rest = body[match.end() :]
        if rest[:1].isdigit():  # a malformed row, not text after the grid
            raise GridParseError(f"row {index} is not a row of digits: {line[:40]!r}")
        cells = match.group(0).split(self.cell_sep) if self.cell_sep else list(match.group(0))
        if len(cells) > MAX_SIDE:
            raise GridParseError(f"row {index} has {len(cells)} cells; rows have 1 to {MAX_SIDE}")
        return tuple(int(c) for c in cells), rest

    def _row_pattern(self) -> re.Pattern:
        return re.compile(r"\d(?:" + re.escape(self.cell_sep) + r"\d)*") if self.cell_sep else re.compile(r"\d+")


def get_codec(spec: str | GridCodec) -> GridCodec:
    """Build a codec from a spec such as ``"minimal"`` or ``"shape+rownum+fence"``."""
    if isinstance(spec, GridCodec):
        return spec
    spec = PRESETS.get(spec.strip(), spec.strip())
    parts = [p.strip() for p in spec.split("+") if p.strip()]
    unknown = [p for p in parts if p not in _PARTS]
    if unknown or not parts:
        raise UnknownCodecError(
            f"unknown codec part(s) {', '.join(unknown) or '(empty)'} in {spec!r}; "
            f"use presets {', '.join(PRESETS)} or parts {', '.join(_PARTS)} joined by '+'"
        )
    seps = [p for p in parts if p in _SEPARATORS]
    if len(seps) > 1:
        raise UnknownCodecError(f"codec {spec!r} names two cell separators ({', '.join(seps)}); pick one")
    return GridCodec(
        cell_sep=_SEPARATORS[seps[0]] if seps else "",
        row_numbers="rownum" in parts,
        shape_header="shape" in parts,
        fence="fence" in parts,
    )


def all_codecs() -> list[GridCodec]:
    """Every distinct codec the parts can build (for round-trip tests and benchmarks)."""
    codecs = []
    for sep in ("", " ", ","):
        for rownum in (False, True):
            for shape in (False, True):
                for fence in (False, True):
                    codecs.append(GridCodec(sep, rownum, shape, fence))
    return codecs
