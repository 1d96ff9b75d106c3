"""Rendering the report page (plain HTML + inline CSS + inline SVG)."""

from __future__ import annotations

from html import escape

from ..errors import ImageError
from . import svg
from .scan import thumbnail_uri

CSS = """
:root{--ink:#1d1d1f;--muted:#6e6e73;--line:#e5e5ea;--accent:#b5179e;font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;color:var(--ink)}
body{margin:0;background:#f7f7f8}main{max-width:1100px;margin:0 auto;padding:16px}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:18px;margin:0 0 10px}h3{font-size:14px;margin:14px 0 6px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
section{background:#fff;border:1px solid var(--line);border-radius:12px;padding:16px;margin:14px 0;overflow:hidden}
.muted{color:var(--muted);font-size:14px}.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.kpi{background:#fff;border:1px solid var(--line);border-radius:12px;padding:12px}.kpi b{display:block;font-size:22px}.kpi span{color:var(--muted);font-size:13px}
.kpi.warn b{color:#c2410c}table{border-collapse:collapse;width:100%;font-size:14px;display:block;overflow-x:auto}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:600}.chart text{font-size:12px;fill:var(--ink)}.chart text.v{fill:var(--muted)}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:8px 24px}
.thumbs{display:flex;flex-wrap:wrap;gap:8px}.thumbs figure{margin:0;width:80px;font-size:11px;color:var(--muted);word-break:break-all}
.thumbs img{width:80px;height:80px;object-fit:contain;background:#fff;border:1px solid var(--line);border-radius:6px}
.group{display:flex;gap:8px;padding:8px 0;border-bottom:1px solid var(--line);overflow-x:auto}
.cloud{display:flex;flex-wrap:wrap;gap:4px 12px;align-items:baseline;line-height:1.1}.cloud span{color:var(--accent)}
.list{font-family:ui-monospace,monospace;font-size:12px;max-height:180px;overflow:auto;background:#fafafa;padding:8px;border-radius:6px;word-break:break-all}
"""


def _thumbs(items, paths, limit=60):
    figs = []
    for pid, caption in items[:limit]:
        path = paths.get(pid)
        try:
            src = thumbnail_uri(path) if path else None     # a local path or a photo's URL
        except ImageError:
            src = None
        img = f"<img src='{src}' alt='{escape(pid)}' loading='lazy'>" if src else "<div class='muted'>(no photo)</div>"
        figs.append(f"<figure>{img}<figcaption>{escape(caption)}</figcaption></figure>")
    more = f"<p class='muted'>… and {len(items) - limit:,} more</p>" if len(items) > limit else ""
    return f"<div class='thumbs'>{''.join(figs)}</div>{more}"


def _list(items, limit=500):
    if not items:
        return "<p class='muted'>none</p>"
    body = "<br>".join(escape(str(i)) for i in items[:limit])
    more = f"<br>… and {len(items) - limit:,} more" if len(items) > limit else ""
    return f"<div class='list'>{body}{more}</div>"


def render(*, title, catalog, infos, columns, words, dupes, dupe_groups, paths, with_index) -> str:
    p = catalog.problems
    unreadable = [i for i in infos if i.error]
    grey = [i for i in infos if i.greyscale]
    readable = [i for i in infos if not i.error]
    kpi = [("products with a photo", f"{len(catalog.products):,}", False),
           ("metadata columns", f"{len(catalog.columns)}", False),
           ("rows without a photo", f"{len(p.rows_without_image):,}", bool(p.rows_without_image)),
           ("photos without a row", f"{len(p.images_without_row):,}", bool(p.images_without_row)),
           ("unreadable photos", f"{len(unreadable):,}", bool(unreadable)),
           ("greyscale photos", f"{len(grey):,}", bool(grey)),
           ("duplicate ids / bad rows", f"{len(p.duplicate_ids):,} / {len(p.bad_rows):,}", bool(p.duplicate_ids or p.bad_rows))]
    if with_index:
        kpi.append(("near-duplicate groups", f"{dupe_groups:,}", bool(dupe_groups)))
    parts = [f"<h1>{escape(title)}</h1><p class='muted'>Made by lookalike report. Everything is in this one file.</p>",
             "<div class='kpis'>" + "".join(f"<div class='kpi{' warn' if w else ''}'><b>{v}</b><span>{escape(k)}</span></div>"
                                            for k, v, w in kpi) + "</div>"]
    rows = "".join(f"<tr><td>{escape(c.name)}</td><td>{c.kind}</td><td>{c.unique:,}</td><td>{c.missing:,}</td>"
                   f"<td>{c.missing / max(1, len(catalog.products)):.1%}</td></tr>" for c in columns)
    parts.append(f"<section><h2>Columns</h2><p class='muted'>{len(catalog.products):,} rows × {len(columns)} columns "
                 f"(besides the id).</p><table><tr><th>column</th><th>type</th><th>unique</th><th>missing</th><th>missing %</th>"
                 f"</tr>{rows}</table><h3>Missing values per column</h3>"
                 + svg.bars([(c.name, c.missing) for c in columns]) + "</section>")
    cats = [c for c in columns if c.kind == "categorical"]
    if cats:
        parts.append("<section><h2>Class balance</h2><div class='grid2'>" + "".join(
            f"<div><h3>{escape(c.name)} ({c.unique})</h3>{svg.bars(c.top[:25])}</div>" for c in cats) + "</div></section>")
    if words:
        top = words[0][1]
        cloud = "".join(f"<span style='font-size:{12 + 30 * (n / top) ** 0.6:.0f}px;opacity:{0.55 + 0.45 * n / top:.2f}' "
                        f"title='{n:,}'>{escape(w)}</span>" for w, n in sorted(words, key=lambda x: x[0]))
        parts.append(f"<section><h2>Words in product names</h2><div class='cloud'>{cloud}</div></section>")
    widths = [i.width for i in readable]
    heights = [i.height for i in readable]
    sizes = {}
    for i in readable:
        sizes[f"{i.width}×{i.height}"] = sizes.get(f"{i.width}×{i.height}", 0) + 1
    parts.append("<section><h2>Photo sizes</h2><div class='grid2'>"
                 f"<div><h3>width (px)</h3>{svg.histogram(widths, label='px')}</div>"
                 f"<div><h3>height (px)</h3>{svg.histogram(heights, label='px')}</div></div>"
                 f"<h3>most common sizes</h3>{svg.bars(sorted(sizes.items(), key=lambda kv: -kv[1])[:8])}</section>")
    parts.append(f"<section><h2>Greyscale and black-and-white photos ({len(grey):,})</h2>"
                 "<p class='muted'>Detected from the pixels (R, G and B equal almost everywhere).</p>"
                 + (_thumbs([(i.id, i.id) for i in grey], paths) if grey else "<p class='muted'>none</p>") + "</section>")
    parts.append(f"<section><h2>Unreadable photos ({len(unreadable):,})</h2>"
                 + _list([f"{i.id}: {i.error}" for i in unreadable]) + "</section>")
    parts.append(f"<section><h2>Rows without a photo ({len(p.rows_without_image):,})</h2>{_list(p.rows_without_image)}"
                 f"<h3>Photos without a row ({len(p.images_without_row):,})</h3>{_list(p.images_without_row)}"
                 f"<h3>Duplicate ids ({len(p.duplicate_ids):,})</h3>{_list(p.duplicate_ids)}"
                 f"<h3>Malformed rows ({len(p.bad_rows):,})</h3>{_list(p.bad_rows)}</section>")
    if with_index:
        groups = "".join("<div class='group'>" + _thumbs([(pid, pid) for pid in g], paths, limit=12) + "</div>" for g in dupes)
        parts.append(f"<section><h2>Near-duplicate products ({dupe_groups:,} groups)</h2><p class='muted'>Products whose "
                     "embeddings are nearly identical (cosine ≥ 0.97): the same photo twice, or variants a shopper "
                     f"cannot tell apart. Largest groups first.</p>{groups or '<p class=muted>none</p>'}</section>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width, initial-scale=1'><title>{escape(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>")
