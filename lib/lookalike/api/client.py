"""A client of a query worker or a router (`lookalike serve`, `lookalike route`): the same searches as an index
opened in process, over HTTP, returning the same Hit objects. Needs only httpx (no torch, faiss or Spark)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, overload

import httpx

from lookalike.api.images import ImageLike, image_bytes, images_of, label
from lookalike.core.errors import InputError, LookalikeError, Unavailable
from lookalike.core.store import read_url
from lookalike.image.part import Part
from lookalike.retrieval.explanation import Explanation
from lookalike.retrieval.hit import Hit


class SearchRefused(InputError):
    """The server refused the request (4xx); the message is the server's, which says what would be right."""

    def __init__(self, status: int, detail: Any):
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


class Client:
    """`Client("http://worker:8000", token=...)`, then `client.search("query.png")`; a context manager, or
    `close()` it. Options not given are the server's defaults (the served version's operating point)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def health(self) -> dict[str, Any]:
        """Which version is served (a 503 while none is loaded raises SearchRefused)."""
        return self._call("GET", "/healthz")

    def info(self) -> dict[str, Any]:
        """The served version, its dimension, filterable columns and what it can be searched by."""
        return self._call("GET", "/api/info")

    @overload
    def search(self, images: ImageLike, k: int = 10, **options: Any) -> list[Hit]: ...
    @overload
    def search(self, images: Sequence[ImageLike], k: int = 10, **options: Any) -> list[list[Hit]]: ...

    def search(self, images, k: int = 10, *, filters: Mapping[str, Any] | None = None, **options: Any):
        """Upload images (paths, bytes, PIL images); options: nprobe, rescore, expand, expand_alpha, verify,
        shortlist, weight_class, weight_strength, crop (x0, y0, x1, y1 as fractions: a part of each image)."""
        listed, one = images_of(images)
        files = [("images", (label(image, i), image_bytes(image, read_url), "application/octet-stream"))
                 for i, image in enumerate(listed)]
        form = {key: _form_value(value) for key, value in {"k": k, **options}.items() if value is not None}
        if filters:
            form["filters"] = json.dumps(filters)
        return _hits(self._call("POST", "/search/images", files=files, data=form), one)

    @overload
    def search_ids(self, image_ids: str, k: int = 10, **options: Any) -> list[Hit]: ...
    @overload
    def search_ids(self, image_ids: Sequence[str], k: int = 10, **options: Any) -> list[list[Hit]]: ...

    def search_ids(self, image_ids, k: int = 10, **options: Any):
        """Catalogue images by id (their own hit left out unless include_self=True)."""
        one = isinstance(image_ids, str)
        body = {"image_ids": [image_ids] if one else list(image_ids), "k": k, **_given(options)}
        return _hits(self._call("POST", "/search/ids", json=body), one)

    @overload
    def search_vectors(self, vectors: Sequence[float], k: int = 10, **options: Any) -> list[Hit]: ...
    @overload
    def search_vectors(self, vectors: Sequence[Sequence[float]], k: int = 10, **options: Any
                       ) -> list[list[Hit]]: ...

    def search_vectors(self, vectors, k: int = 10, **options: Any):
        """Raw vectors of the index's dimension (a numpy array too), normalised by the server."""
        rows = vectors.tolist() if hasattr(vectors, "tolist") else list(vectors)
        one = bool(rows) and not isinstance(rows[0], list | tuple)
        body = {"vectors": [rows] if one else rows, "k": k, **_given(options)}
        return _hits(self._call("POST", "/search/vectors", json=body), one)

    @overload
    def search_text(self, texts: str, k: int = 10, **options: Any) -> list[Hit]: ...
    @overload
    def search_text(self, texts: Sequence[str], k: int = 10, **options: Any) -> list[list[Hit]]: ...

    def search_text(self, texts, k: int = 10, **options: Any):
        """Text queries against a word-space index."""
        one = isinstance(texts, str)
        body = {"texts": [texts] if one else list(texts), "k": k, **_given(options)}
        return _hits(self._call("POST", "/search/text", json=body), one)

    @overload
    def search_uris(self, uris: str, k: int = 10, **options: Any) -> list[Hit]: ...
    @overload
    def search_uris(self, uris: Sequence[str], k: int = 10, **options: Any) -> list[list[Hit]]: ...

    def search_uris(self, uris, k: int = 10, **options: Any):
        """Images the worker reads itself, from URIs under its --allow-uri prefixes."""
        one = isinstance(uris, str)
        body = {"uris": [uris] if one else list(uris), "k": k, **_given(options)}
        return _hits(self._call("POST", "/search/uris", json=body), one)

    def search_examples(self, images: Sequence[ImageLike] = (), image_ids: Sequence[str] = (), *,
                        negative_images: Sequence[ImageLike] = (), negative_ids: Sequence[str] = (),
                        negative_weight: float | None = None, k: int = 10,
                        filters: Mapping[str, Any] | None = None, **options: Any) -> list[Hit]:
        """One search made of examples: images (uploaded) and catalogue ids to find more of, and others to find
        fewer of (`negative_weight`: how far they push, 0-1); the catalogue examples are never hits. Options as
        `search` (crop applies to every uploaded example)."""
        files = [(field, (label(image, i), image_bytes(image, read_url), "application/octet-stream"))
                 for field, listed in (("images", images), ("negative_images", negative_images))
                 for i, image in enumerate(listed)]
        form: dict[str, Any] = {key: _form_value(value) for key, value in
                                {"k": k, "negative_weight": negative_weight, **options}.items() if value is not None}
        form |= {"image_ids": list(image_ids), "negative_ids": list(negative_ids)}
        if filters:
            form["filters"] = json.dumps(filters)
        return _hits(self._call("POST", "/search/examples", files=files or None, data=form), True)

    def parts(self, image: ImageLike) -> list[Part]:
        """The parts of a composite mark (uploaded), largest first: each a crop to search (`search(..., crop=)`)."""
        files = [("image", (label(image, 0), image_bytes(image, read_url), "application/octet-stream"))]
        return [Part.from_dict(p) for p in self._call("POST", "/parts", files=files)["parts"]]

    def explain(self, image_id: str, *, query: ImageLike | None = None, query_id: str | None = None,
                crop: str | Sequence[float] | None = None) -> Explanation:
        """Why catalogue image `image_id` matches a query image (uploaded) or a catalogue image (`query_id`): the
        score's parts, the cosine's percentile in the catalogue, the verified keypoint pairs."""
        if (query is None) == (query_id is None):
            raise InputError("explain needs one query: query= (an image) or query_id= (a catalogue image)")
        if query_id is not None:
            answer = self._call("POST", "/explain/ids", json={"query_id": query_id, "image_id": image_id})
        else:
            files = [("image", (label(query, 0), image_bytes(query, read_url), "application/octet-stream"))]
            form = {"image_id": image_id, **({"crop": _form_value(crop)} if crop is not None else {})}
            answer = self._call("POST", "/explain/images", files=files, data=form)
        return Explanation.from_dict(answer)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise Unavailable(f"{self.url}{path}: {type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except (ValueError, AttributeError):
                detail = response.text[:500]
            raise SearchRefused(response.status_code, detail)
        try:
            return response.json()
        except ValueError as e:
            raise LookalikeError(f"{self.url}{path} answered {response.status_code} with no JSON") from e


def _given(options: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


def _form_value(value: Any) -> str:
    if isinstance(value, list | tuple):  # a crop: x0,y0,x1,y1
        return ",".join(str(v) for v in value)
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _hits(answer: dict[str, Any], one: bool) -> list[Hit] | list[list[Hit]]:
    results = [[Hit.from_dict(h) for h in result["hits"]] for result in answer["results"]]
    return results[0] if one else results
