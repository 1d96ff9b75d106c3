"""Search by words: a sentence encoder (`encoder`), shoppers' words for catalog labels (`glossary.json`), and
full-text search over an index's text columns fused with the vector match (`fulltext`)."""

from pathlib import Path

from .encoder import MAX_CHARS, QueryError, TextEncoder, check_query, load_text_encoder

GLOSSARY = Path(__file__).resolve().parent / "glossary.json"

__all__ = ["GLOSSARY", "MAX_CHARS", "QueryError", "TextEncoder", "check_query", "load_text_encoder"]
