"""lookalike: visual search and recommendation for fashion catalogs.

    from lookalike import Index, Embedder
    index = Index.build("photos/", "styles.csv", out="catalog.idx")
    index.search("15970", k=10, where={"gender": "Women"})
    Embedder.load("default").encode(["a.jpg", "b.jpg"])
"""

from .catalog import Catalog, Product
from .errors import (CatalogError, FilterError, ImageError, IndexStoreError, LookalikeError, ModelError,
                     NotFoundError)
from .images import load_image
from .index import BuildReport, Index
from .models import Embedder
from .search import Result

__version__ = "0.1.0"
__all__ = ["Index", "BuildReport", "Embedder", "Catalog", "Product", "Result", "load_image", "LookalikeError",
           "ImageError", "CatalogError", "ModelError", "IndexStoreError", "FilterError", "NotFoundError"]
