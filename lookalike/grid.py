"""Contact-sheet pictures: a query and its neighbours in a captioned row (`--grid`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from .errors import ImageError
from .images import fit, load_image
from .search import Result

TILE = (160, 200)
CAPTION_LINES = 3
LINE = 14
PREFERRED = ("articleType", "class", "baseColour", "gender", "productDisplayName", "name")


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def caption(result: Result) -> list[str]:
    values = [str(result.metadata[c]) for c in PREFERRED if result.metadata.get(c)]
    values += [str(v) for c, v in result.metadata.items() if v and c not in PREFERRED]
    return [result.id, f"{result.score:.3f}  {values[0] if values else ''}", *values[1:CAPTION_LINES - 1]]


def _tile(image: Image.Image | None, lines: Sequence[str], font, highlight: bool = False) -> Image.Image:
    w, h = TILE
    tile = Image.new("RGB", (w, h + LINE * CAPTION_LINES + 6), "white")
    if image is not None:
        tile.paste(fit(image, (w - 8, h - 8)), (4, 4))
    else:
        ImageDraw.Draw(tile).text((10, h // 2), "(photo missing)", fill="grey", font=font)
    draw = ImageDraw.Draw(tile)
    if highlight:
        draw.rectangle([0, 0, w - 1, h - 1], outline=(200, 40, 40), width=3)
    for i, text in enumerate(lines):
        while draw.textlength(text, font=font) > w - 8 and len(text) > 4:
            text = text.rstrip("…")[:-1] + "…"
        draw.text((4, h + 3 + i * LINE), text, fill="black" if i == 0 else (80, 80, 80), font=font)
    return tile


def result_image(result: Result) -> Image.Image | None:
    try:
        return load_image(result.path) if result.path else None
    except ImageError:
        return None


def draw_rows(rows: Sequence[tuple[Image.Image | None, str, Sequence[Result]]], out: str | Path) -> Path:
    """One row per query: its image (captioned with `label`) then its results. Written as PNG to `out`."""
    font = _font()
    tiles = [[_tile(img, [label], font, highlight=True)] + [_tile(result_image(r), caption(r), font) for r in res]
             for img, label, res in rows]
    return _sheet(tiles, out)


def contact_sheet(items: Sequence[tuple[Image.Image | None, Sequence[str]]], out: str | Path, columns: int = 8) -> Path:
    """Images with captions, `columns` to a row. Written as PNG to `out`."""
    font = _font()
    tiles = [_tile(img, lines, font) for img, lines in items]
    return _sheet([tiles[i:i + columns] for i in range(0, len(tiles), columns)] or [[_tile(None, [], font)]], out)


def _sheet(tiles: list[list[Image.Image]], out: str | Path) -> Path:
    cols = max(len(t) for t in tiles)
    tw, th = tiles[0][0].size
    sheet = Image.new("RGB", (cols * (tw + 4) + 4, len(tiles) * (th + 4) + 4), (235, 235, 235))
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            sheet.paste(tile, (4 + c * (tw + 4), 4 + r * (th + 4)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


KIND_COLOURS = {"top": (220, 38, 127), "bottom": (37, 99, 235), "one-piece": (147, 51, 234), "footwear": (234, 88, 12),
                "bag": (22, 163, 74), "product": (80, 80, 80)}


def draw_look(image: Image.Image, garments, out: str | Path) -> Path:
    """The photo with a labelled box per garment, then one row of results per garment."""
    font = _font(14)
    shown = image.copy()
    shown.thumbnail((600, 900))
    scale = shown.width / image.width
    draw = ImageDraw.Draw(shown)
    for g in garments:
        colour = KIND_COLOURS.get(g.kind, (0, 0, 0))
        x0, y0, x1, y1 = (int(v * scale) for v in g.box)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=3)
        label = f"{g.kind} {g.score:.2f}"
        draw.rectangle([x0, y0, x0 + draw.textlength(label, font=font) + 8, y0 + 18], fill=colour)
        draw.text((x0 + 4, y0 + 2), label, fill="white", font=font)
    small = _font()     # a garment without results says why under its crop ("no bags in this catalog")
    tiles = [[_tile(g.crop, [g.kind] + ([g.note] if getattr(g, "note", None) else []), small, highlight=True)]
             + [_tile(result_image(r), caption(r), small) for r in g.results] for g in garments]
    tw, th = tiles[0][0].size
    cols = max(len(t) for t in tiles)
    width = shown.width + 12 + cols * (tw + 4) + 4
    height = max(shown.height + 8, len(tiles) * (th + 4) + 4)
    sheet = Image.new("RGB", (width, height), (235, 235, 235))
    sheet.paste(shown, (4, 4))
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            sheet.paste(tile, (shown.width + 12 + c * (tw + 4), 4 + r * (th + 4)))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
