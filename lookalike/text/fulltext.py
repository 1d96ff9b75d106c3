"""Full-text search over an index's text columns (a product name, a description), fused with the vector match.

The text columns are found by their values: a column whose values are mostly several words long and mostly
different from each other (a name, a title, a description), not a label column ("Casual Shoes" repeats). They go
into an SQLite FTS5 table (Porter stemming, accents folded) built in memory when an index first answers words.
A query matches any of its words, ranked by BM25; a shopper's word the glossary knows also matches the catalog
term it stands for ("sneakers" also matches "casual shoes" and "sports shoes").

Fusion is reciprocal rank fusion (RRF): each product scores 1/(60 + its rank) in the vector ranking plus the same
for its rank in the BM25 ranking, so a product both find comes first, and one only BM25 finds (an exact word
such as a brand) or only the vectors find (a photo whose name does not use the query's words) still gets in.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from functools import lru_cache
from typing import Iterable, Sequence

import numpy as np

#: RRF's constant: ranks past the first few count nearly alike
RRF_K = 60
_WORD = re.compile(r"\w+", re.UNICODE)
#: words that say nothing about a product: left out of the full-text match ("white tee for women")
STOP = frozenset("a an and at by for from in is it of on or the to with without".split())
_NAMED = ("name", "title", "description", "desc", "caption", "text", "productdisplayname", "summary")


def text_columns(columns: Sequence[str], values: dict[str, list]) -> list[str]:
    """The columns that hold free text: named like it (`name`, `title`, `description`, ...) or, from a sample of
    their `values`, mostly 3+ words and mostly distinct."""
    out = []
    for column in columns:
        sample = [str(v) for v in values.get(column, []) if v not in (None, "")]
        if not sample:
            continue
        words = np.mean([len(_WORD.findall(v)) for v in sample])
        distinct = len(set(sample)) / len(sample)
        named = column.lower().replace("_", "").replace(" ", "") in _NAMED
        if (named and words >= 1.5) or (words >= 3 and distinct >= 0.5):
            out.append(column)
    return out


@lru_cache(maxsize=1)
def _expansions() -> list[tuple[re.Pattern, str]]:
    """(shopper's phrase as a pattern, catalog term) from the glossary, longest phrases first."""
    from . import GLOSSARY

    pairs = []
    for column, words in json.loads(GLOSSARY.read_text()).items():
        if column.startswith("_") or column not in ("articleType", "baseColour"):
            continue
        for value, synonyms in words.items():
            for s in synonyms:
                if s.lower() != value.lower():
                    pairs.append((s.lower(), value))
    pairs.sort(key=lambda p: -len(p[0]))
    return [(re.compile(r"\b" + re.escape(s) + r"\b"), value) for s, value in pairs]


@lru_cache(maxsize=1)
def label_words() -> frozenset[str]:
    """Every word of the glossary (label values and shoppers' words for them) and the stop words."""
    from . import GLOSSARY

    words = set(STOP)
    for column, values in json.loads(GLOSSARY.read_text()).items():
        if not column.startswith("_"):
            for value, synonyms in values.items():
                for phrase in (value, *synonyms):
                    words.update(_WORD.findall(phrase.lower()))
    return frozenset(words)


def words_weight(text: str) -> float:
    """BM25's weight in the fusion for this query: full (1.0) when it has a word the labels do not cover (a brand,
    a material: what only the names can match); 0.3 when all its words are about type, colour, gender or use, which
    the pictures and the agreement re-ranking answer better (benchmarks/text.py: 0.914 against 0.898 at 1.0)."""
    return 1.0 if any(w not in label_words() and not w.isdigit() for w in _WORD.findall(text.lower())) else 0.3


def match_expression(text: str, expand: bool = True) -> str | None:
    """An FTS5 query: any of the words, or (`expand`) of the catalog terms the glossary maps the query's phrases to."""
    low = text.lower()
    terms = [f'"{w}"' for w in dict.fromkeys(_WORD.findall(low)) if w not in STOP]
    for pattern, value in _expansions() if expand else ():
        if pattern.search(low):
            phrase = " ".join(_WORD.findall(value.lower()))
            if phrase:
                terms.append(f'"{phrase}"')
    terms = list(dict.fromkeys(terms))
    return " OR ".join(terms) if terms else None


class FullText:
    """BM25 over the given rows' text: `search("black purse", 100)` -> [(row, bm25 score)], best first."""

    def __init__(self, columns: Sequence[str], rows: Iterable[tuple]):
        self.columns = list(columns)
        self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        names = ", ".join(f"c{i}" for i in range(len(self.columns)))
        self._conn.execute(f"CREATE VIRTUAL TABLE fts USING fts5({names}, "
                           "tokenize = 'porter unicode61 remove_diacritics 2')")
        marks = ", ".join("?" * (len(self.columns) + 1))
        self._conn.executemany(f"INSERT INTO fts (rowid, {names}) VALUES ({marks})", rows)
        self._conn.commit()

    def search(self, text: str, limit: int, allowed: np.ndarray | None = None,
               exclude: set[int] = frozenset(), expand: bool = True) -> list[tuple[int, float]]:
        expression = match_expression(text, expand)
        if not expression or limit <= 0:
            return []
        sql, params = "SELECT rowid, bm25(fts) FROM fts WHERE fts MATCH ?", [expression]
        if allowed is not None:        # the filter inside the query: the best matches among the allowed rows
            sql += " AND rowid IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(np.asarray(allowed).tolist()))
        with self._lock:
            try:
                found = self._conn.execute(sql + " ORDER BY rank LIMIT ?", (*params, limit + len(exclude))).fetchall()
            except sqlite3.OperationalError:      # a query FTS5 cannot parse: no full-text matches
                return []
        return [(int(r), -float(s)) for r, s in found if r not in exclude][:limit]


def fuse(rankings: Sequence[Sequence[int]], weights: Sequence[float] | None = None) -> list[int]:
    """Reciprocal rank fusion of several rankings of rows (best first): the fused order, best first."""
    weights = weights or [1.0] * len(rankings)
    score: dict[int, float] = {}
    first: dict[int, int] = {}
    for ranking, w in zip(rankings, weights):
        for rank, row in enumerate(ranking):
            score[row] = score.get(row, 0.0) + w / (RRF_K + rank + 1)
            first.setdefault(row, len(first))
    return sorted(score, key=lambda r: (-score[r], first[r]))
