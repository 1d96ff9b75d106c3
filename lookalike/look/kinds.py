"""Garment kinds (top, bottom, one-piece, footwear, bag): which parser classes they are and which catalog
products they are searched among. The mapping is data (`kinds.json`), replaceable per catalog."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT = Path(__file__).parent / "kinds.json"
KINDS = ("top", "bottom", "one-piece", "footwear", "bag")
#: Parser classes: background, the five kinds, and the rest of the person (skin, hair, accessories).
CLASSES = ("background", *KINDS, "person")


@dataclass
class Kinds:
    parts: dict[str, list[str]]                  # kind -> source labels (CCP)
    catalog: dict[str, list[dict[str, list[str]]]]  # kind -> candidate filters, first usable wins
    person: list[str]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Kinds":
        raw = json.loads(Path(path or DEFAULT).read_text())
        kinds = raw["kinds"]
        return cls({k: v["parts"] for k, v in kinds.items()}, {k: v.get("catalog", []) for k, v in kinds.items()},
                   raw.get("person", []))

    def class_of_label(self, label: str) -> int:
        """Parser class index of a source label (0 = background)."""
        for kind, parts in self.parts.items():
            if label in parts:
                return CLASSES.index(kind)
        return CLASSES.index("person") if label in self.person else 0

    def filter_for(self, kind: str, columns: list[str], facets) -> dict[str, list[str]] | None:
        """The first configured filter the index can answer (its column exists and some value is present)."""
        for candidate in self.catalog.get(kind, []):
            usable = {}
            for column, values in candidate.items():
                if column not in columns:
                    break
                present = {v for v, _ in facets(column)}
                kept = [v for v in values if v in present]
                if not kept:
                    break
                usable[column] = kept
            else:
                return usable
        return None
