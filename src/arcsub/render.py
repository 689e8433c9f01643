"""PNG pictures of tasks and attempts in the usual ARC colours (Pillow, no matplotlib).

One row per train pair (input, output); one row per test input (input, the
solution when known, then both attempts, each marked solved or not).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from .io import write_bytes_atomic
from .tasks import Grid, Task

# The palette of the ARC testing interface: black, blue, red, green, yellow, grey,
# magenta, orange, azure, maroon.
ARC_COLORS = (
    (0, 0, 0), (0, 116, 217), (255, 65, 54), (46, 204, 64), (255, 220, 0),
    (170, 170, 170), (240, 18, 190), (255, 133, 27), (127, 219, 255), (135, 12, 37),
)  # fmt: skip
BACKGROUND = (255, 255, 255)
GRID_LINE = (85, 85, 85)
SOLVED = (46, 160, 67)
WRONG = (207, 34, 46)
MARGIN = 12
LABEL_HEIGHT = 18


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _cell_size(grids: Sequence[Grid]) -> int:
    largest = max(max(len(g), len(g[0])) for g in grids)
    return max(4, min(24, 240 // largest))


def render_task(
    task: Task,
    path: str | Path,
    attempts: Sequence[tuple[Grid, Grid]] | None = None,
) -> Path:
    """Draw ``task`` (and ``attempts`` per test input, if given) to a PNG at ``path``."""
    from PIL import Image, ImageDraw

    rows: list[list[tuple[str, Grid, tuple[int, int, int] | None]]] = []
    for i, pair in enumerate(task.train):
        rows.append([(f"train {i + 1} input", pair.input, None), (f"train {i + 1} output", pair.output, None)])
    for i, pair in enumerate(task.test):
        row = [(f"test {i + 1} input", pair.input, None)]
        if pair.output is not None:
            row.append((f"test {i + 1} solution", pair.output, None))
        if attempts is not None and i < len(attempts):
            for k, grid in enumerate(attempts[i], start=1):
                mark = None if pair.output is None else (SOLVED if grid == pair.output else WRONG)
                verdict = "" if mark is None else (" solved" if mark == SOLVED else " wrong")
                row.append((f"attempt {k}{verdict}", grid, mark))
        rows.append(row)

    cell = _cell_size([g for row in rows for _, g, _ in row])
    col_width = max(len(g[0]) for row in rows for _, g, _ in row) * cell + MARGIN
    col_width = max(col_width, 130)
    row_heights = [max(len(g) for _, g, _ in row) * cell + LABEL_HEIGHT + MARGIN for row in rows]
    width = MARGIN + col_width * max(len(row) for row in rows)
    height = LABEL_HEIGHT + MARGIN + sum(row_heights)

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font()
    draw.text((MARGIN, 2), f"task {task.id}", fill=(0, 0, 0), font=font)
    y = LABEL_HEIGHT + MARGIN
    for row, row_height in zip(rows, row_heights):
        for col, (label, grid, mark) in enumerate(row):
            x = MARGIN + col * col_width
            draw.text((x, y), label, fill=mark or (0, 0, 0), font=font)
            _draw_grid(draw, grid, x, y + LABEL_HEIGHT, cell, mark)
        y += row_height

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_bytes_atomic(path, buffer.getvalue())


def _draw_grid(draw, grid: Grid, x: int, y: int, cell: int, frame) -> None:
    for r, row in enumerate(grid):
        for c, colour in enumerate(row):
            box = (x + c * cell, y + r * cell, x + (c + 1) * cell - 1, y + (r + 1) * cell - 1)
            draw.rectangle(box, fill=ARC_COLORS[colour], outline=GRID_LINE if cell >= 8 else None)
    if frame is not None:
        draw.rectangle((x - 2, y - 2, x + len(grid[0]) * cell + 1, y + len(grid) * cell + 1), outline=frame, width=2)
