"""Request and response models of the HTTP API (they make the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field


class Product(BaseModel):
    id: str
    score: Optional[float] = Field(None, description="cosine similarity to the query (1 = same photo)")
    metadata: dict[str, Optional[str]] = Field(default_factory=dict)
    image: str = Field(description="URL of the product photo")
    thumbnail: str = Field(description="URL of a small JPEG of the photo")


class SearchResponse(BaseModel):
    query: dict = Field(description="what was searched: an upload's name or a product")
    filters: dict[str, list[str]] = Field(default_factory=dict)
    results: list[Product]
    took_ms: float


class Label(BaseModel):
    label: str
    p: float


class ClassifyResponse(BaseModel):
    attributes: dict[str, list[Label]]
    took_ms: float


class FacetValue(BaseModel):
    value: str
    count: int


class Facets(BaseModel):
    products: int
    columns: dict[str, list[FacetValue]] = Field(description="filterable columns: values with their counts")


class Health(BaseModel):
    status: str
    products: int
    model: str
    heads: list[str]
    updated: Optional[str]
    admin: bool = Field(description="whether admin writes are enabled (an API key is configured)")
    text: bool = Field(False, description="whether the index answers words (`GET /api/search?q=`): its model has a "
                                          "text alignment")


class Error(BaseModel):
    detail: str


class Garment(BaseModel):
    kind: str = Field(description="top, bottom, one-piece, footwear, bag; product when the photo shows no person")
    box: list[int] = Field(description="x0, y0, x1, y1 in pixels of the photo as displayed (after EXIF rotation)")
    score: float
    attributes: dict[str, dict] = Field(default_factory=dict, description="head -> {label, p}: only labels the model "
                                        "is confident of (p >= 0.5); gender is the person's")
    results: list[Product]
    note: Optional[str] = Field(None, description="why there are no results, e.g. 'no bags in this catalog'")


class LookResponse(BaseModel):
    image: Optional[str]
    size: list[int] = Field(description="width, height of the photo as displayed")
    full_shot: bool = Field(description="head and feet both visible")
    garments: list[Garment]
    took_ms: float
