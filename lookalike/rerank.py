"""Agreement re-ranking: of a query's nearest candidates, those whose catalog labels agree with what the query
most likely is come first.

A shopper who asks for "more like this" expects the same kind of garment, in the same colour, for the same
gender, and only then the closest look. The vectors alone place a neighbour of another type or colour among
the top ten about one time in five. So search takes a pool of nearest candidates (50 by default) and adds to
each candidate's cosine, per agreement column (articleType, baseColour and gender by default), `weight` times
the belief that the query has the candidate's value in that column. The belief is:

- the product's own value, when the query is a catalog product that has one (search by id);
- otherwise a blend of the model's prediction for the query photo (`prediction_share`, when the model has a
  head for that column) and the similarity-weighted votes of the `voters` nearest candidates' labels
  (weights exp((cosine - best cosine) / temperature)).

A candidate with no value in a column is unknown there, not in disagreement: it gets the agreement expected of a
candidate whose value is drawn from those of the pool's candidates (the belief's mass on the pool's values). A preference never beats a much closer
match: a candidate never overtakes one whose cosine is more than `max_gap` higher (an exact copy of the query photo
stays first even when it has no labels). The re-ranked results keep their cosine as `score`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

DEFAULT_COLUMNS = ("articleType", "baseColour", "gender")


@dataclass(frozen=True)
class Agreement:
    """How search re-ranks by label agreement. `columns=()` turns it off."""

    columns: tuple[str, ...] = DEFAULT_COLUMNS
    weight: float = 1.0
    prediction_share: float = 0.3
    voters: int = 10
    temperature: float = 0.05
    pool: int = 50
    max_gap: float = 0.2

    def beliefs(self, scores: np.ndarray, codes: Mapping[str, np.ndarray], sizes: Mapping[str, int],
                predicted: Mapping[str, np.ndarray] | None = None,
                own: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
        """Per column, the probability of each of its `sizes[column]` values for the query.

        `scores`: the candidates' cosines, best first; `codes[column]`: each candidate's value as an integer
        (-1 for none); `predicted[column]`: the model's probabilities over the same values; `own[column]`:
        the query product's own value (-1 or absent for none)."""
        predicted, own = predicted or {}, own or {}
        top = scores[:self.voters]
        weights = np.exp((top - top[0]) / self.temperature) if len(top) else top
        out = {}
        for column, labels in codes.items():
            size = sizes[column]
            mine = own.get(column, -1)
            if mine is not None and 0 <= mine < size:
                belief = np.zeros(size, np.float64)
                belief[mine] = 1.0
                out[column] = belief
                continue
            voters = labels[:self.voters]
            known = voters >= 0
            votes = np.bincount(voters[known], weights=weights[known], minlength=size).astype(np.float64)
            if votes.sum() > 0:
                votes /= votes.sum()
            prediction = predicted.get(column)
            if prediction is not None:
                votes = self.prediction_share * np.asarray(prediction, np.float64) + (1 - self.prediction_share) * votes
            out[column] = votes
        return out

    def belief(self, scores: np.ndarray, labels: "LabelCodes", rows: np.ndarray, head: Sequence[str] | None = None,
               probs: np.ndarray | None = None) -> np.ndarray:
        """`beliefs` for one column: candidates given as catalog `rows` (best first, with their `scores`) of the
        column's `labels`, and optionally a model head's `probs` over its `head` labels."""
        predicted = labels.from_head(head, probs) if head is not None and probs is not None else None
        column = {"c": labels.rows[rows]}
        return self.beliefs(scores, column, {"c": len(labels.values)},
                            {"c": predicted} if predicted is not None else None)["c"]

    def order(self, scores: np.ndarray, codes: Mapping[str, np.ndarray], sizes: Mapping[str, int],
              predicted: Mapping[str, np.ndarray] | None = None, own: Mapping[str, int] | None = None) -> np.ndarray:
        """Positions of the candidates, best first, by cosine plus agreement (ties keep the cosine order)."""
        scores = np.asarray(scores, np.float64)
        total = scores.copy()
        for column, belief in self.beliefs(scores, codes, sizes, predicted, own).items():
            labels = codes[column]
            known = labels[labels >= 0]
            seen = np.bincount(known, minlength=len(belief)) / len(known) if len(known) else np.zeros(len(belief))
            unknown = float(belief @ seen)     # the agreement expected of a candidate whose value is not known
            total += self.weight * np.where(labels >= 0, belief[np.maximum(labels, 0)], unknown)
        return bounded(np.argsort(-total, kind="stable"), scores, self.max_gap)

    def order_rows(self, rows: np.ndarray, scores: np.ndarray, labels: Mapping[str, "LabelCodes"],
                   heads: Mapping[str, Sequence[str]] | None = None, probs: Mapping[str, np.ndarray] | None = None,
                   own_row: int | None = None) -> np.ndarray:
        """`order` for candidates given as catalog rows, with each agreement column's `LabelCodes`; `probs`:
        the model's predictions for the query photo over its `heads` labels (re-indexed to the catalog's
        values here); `own_row`: the query's own row, when it is a catalog product."""
        codes = {c: lab.rows[rows] for c, lab in labels.items()}
        sizes = {c: len(lab.values) for c, lab in labels.items()}
        own = {c: int(lab.rows[own_row]) for c, lab in labels.items()} if own_row is not None else None
        predicted = {}
        for c, lab in labels.items():
            if heads and probs and c in heads and c in probs:
                mapped = lab.from_head(heads[c], probs[c])
                if mapped is not None:
                    predicted[c] = mapped
        return self.order(scores, codes, sizes, predicted, own)


def bounded(order: np.ndarray, scores: np.ndarray, max_gap: float) -> np.ndarray:
    """`order` changed as little as possible so that no position comes before one whose score is more than
    `max_gap` higher: each next pick is the first remaining in `order`, unless a remaining one is that much closer
    to the query, in which case the first such one goes first (and so on up)."""
    if len(scores) == 0 or float(np.max(scores) - np.min(scores)) <= max_gap:
        return np.asarray(order, dtype=np.int64)       # the usual case: no score is that much higher
    scores = np.asarray(scores, dtype=np.float64).tolist()
    remaining = list(order)
    out = []
    while remaining:
        pick = 0
        while True:
            closer = next((i for i, r in enumerate(remaining) if scores[r] > scores[remaining[pick]] + max_gap), None)
            if closer is None:
                break
            pick = closer
        out.append(remaining.pop(pick))
    return np.asarray(out, dtype=np.int64)


# How `Index.classify` blends a head's prediction with the neighbours' labels: an even share keeps a small
# catalog's few neighbours from outvoting the model (measured in docs/models.md).
CLASSIFY = Agreement(prediction_share=0.5)


def agreement_from(value: "Agreement | bool | Sequence[str] | None") -> Agreement | None:
    """`True`/None: the default; `False` or `()`: off; a list of column names: those columns."""
    if value is None or value is True:
        return Agreement()
    if value is False:
        return None
    if isinstance(value, Agreement):
        return value if value.columns else None
    columns = (value,) if isinstance(value, str) else tuple(value)
    return Agreement(columns=columns) if columns else None


class LabelCodes:
    """One metadata column as integer codes by row (-1 for none), with its values, for re-ranking."""

    def __init__(self, values: Sequence[str | None]):
        self.values = sorted({v for v in values if v is not None and v != ""})
        self.code = {v: i for i, v in enumerate(self.values)}
        self.rows = np.array([self.code.get(v, -1) if v is not None else -1 for v in values], dtype=np.int32)
        self._maps: dict[tuple[str, ...], np.ndarray] = {}

    def from_head(self, labels: Sequence[str], probs: np.ndarray) -> np.ndarray | None:
        """A model head's probabilities re-indexed to this column's values (None when no label matches)."""
        key = tuple(labels)
        if key not in self._maps:
            self._maps[key] = np.array([self.code.get(label, -1) for label in labels], dtype=np.int64)
        positions = self._maps[key]
        hit = positions >= 0
        if not hit.any():
            return None
        out = np.zeros(len(self.values), np.float64)
        np.add.at(out, positions[hit], np.asarray(probs, np.float64)[hit])
        total = out.sum()
        return out / total if total > 0 else None
