"""An index directory: manifest, vectors, FAISS index and SQLite metadata, written atomically."""

from .index import BuildReport, Index

__all__ = ["Index", "BuildReport"]
