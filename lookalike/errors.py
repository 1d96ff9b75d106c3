"""Errors a user can cause. Each carries a message meant to be shown as is (the CLI prints it, the API returns it)."""


class LookalikeError(Exception):
    """Base class: anything the user can fix (bad input, missing file, wrong model)."""


class ImageError(LookalikeError):
    """An image could not be decoded, or is too large, or is not an image at all."""


class CatalogError(LookalikeError):
    """A photo folder or metadata file cannot be read."""


class ModelError(LookalikeError):
    """A model cannot be found, loaded, or does not fit the index it is used with."""


class IndexStoreError(LookalikeError):
    """An index directory is missing, incomplete, or fails its checksums."""


class FilterError(LookalikeError):
    """A `where` filter names an unknown column or value."""


class NotFoundError(LookalikeError):
    """A product id is not in the index."""


def listed(names, limit: int = 10) -> str:
    """Names for an error message: the first `limit`, then how many there are in all. A CSV read with the wrong
    delimiter or a binary file can have a million "columns": listing them all made an 11 MB error."""
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names):,} in all)"
