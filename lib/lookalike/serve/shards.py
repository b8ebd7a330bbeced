"""The shard workers behind a router: one pooled HTTP client, the fan-out with its failure policy, each shard's
answer checked for what the router reads of it, and the merged answer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from typing import Any

import httpx
import numpy as np
from fastapi.responses import Response
from pydantic import ValidationError

from lookalike.core.errors import LookalikeError
from lookalike.index.rerank import Expansion, expand
from lookalike.retrieval.vectors import unit_rows
from lookalike.serve.api_models import ExplainAnswer, PartsAnswer, SearchAnswer
from lookalike.serve.settings import RouterSettings


class ShardError(LookalikeError):
    """The answer to the client: a status and its detail (a shard's 4xx passed on, or no usable answer)."""

    def __init__(self, status: int, detail: Any):
        super().__init__(detail)
        self.status, self.detail = status, detail


class ShardFailed(LookalikeError):
    """One shard failed (5xx, or not a JSON answer): the others may still answer."""


SHARD_FAILURES = (ShardFailed, httpx.HTTPError, ValueError)  # ValueError: a shard's answer that is not JSON


def _detail(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text[:200] or response.reason_phrase


def _checked(path: str, response: httpx.Response) -> dict[str, Any]:
    """A shard's answer, checked for what the router reads of it: JSON with standard numbers (no NaN or
    Infinity), of the expected shape. Anything else is that shard's failure, never the router's."""
    try:
        answer = json.loads(response.content, parse_constant=_refuse_constant)
        if path.startswith("/search/"):
            SearchAnswer.model_validate(answer)
        elif path.startswith("/explain/"):
            ExplainAnswer.model_validate(answer)
        elif path == "/parts":
            PartsAnswer.model_validate(answer)
        elif not isinstance(answer, dict) or not isinstance(answer.get("vectors"), list):
            raise ValueError("no vectors")
    except (ValueError, ValidationError, RecursionError) as e:
        raise ShardFailed(f"answered {response.status_code} with an answer that is not what {path} returns: "
                          f"{str(e)[:200]}") from e
    return answer


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _reason(error: BaseException) -> str:
    return str(error) if isinstance(error, ShardFailed) else f"{type(error).__name__}: {error}".rstrip(": ")


def merge(answers: list[dict[str, Any]], k: int, drop: list[Collection[str]] | None = None) -> list[list[dict]]:
    """Per query, every shard's hits by descending score (what each shard ranked by: a verified hit's includes its
    inliers' bonus, so it outranks an unverified one on another shard), the best k, ranked again. drop[i] names the
    hits to leave out of query i (the query image itself, or a search's catalogue examples)."""
    n = len(answers[0]["results"])
    merged = []
    for q in range(n):
        hits = [h for a in answers for h in a["results"][q]["hits"] if not drop or h["image_id"] not in drop[q]]
        hits.sort(key=lambda h: -h["score"])
        merged.append([{**h, "rank": r} for r, h in enumerate(hits[:k], 1)])
    return merged


def dropped(drop: list[Collection[str]] | None) -> int:
    """How many more hits to ask each shard for, so that k remain after the dropped ones leave."""
    return max((len(d) for d in drop), default=0) if drop else 0


class Shards:
    """The shard workers behind the router: one pooled HTTP client, a fan-out with its failure policy, and the
    merged answer."""

    def __init__(self, settings: RouterSettings):
        self.settings = settings
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        self.client = httpx.AsyncClient(timeout=settings.shard_timeout_s, headers=headers)

    async def call(self, shard: str, path: str, **kw) -> dict[str, Any]:
        try:
            response = await self.client.post(shard + path, **kw)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            # A pooled connection the shard had closed (after an error, or idle): once more, on a fresh one.
            # Searches are idempotent, so a second try cannot do anything twice.
            response = await self.client.post(shard + path, **kw)
        if 400 <= response.status_code < 500:  # the request itself is wrong: every shard would say so
            raise ShardError(response.status_code, _detail(response))
        if response.status_code >= 300:
            raise ShardFailed(f"answered {response.status_code}: {_detail(response)}")
        return _checked(path, response)

    async def fan_out(self, path: str, body: dict[str, Any]) -> tuple[list[dict], list[str]]:
        shards = self.settings.shards
        outcomes = await asyncio.gather(*(self.call(s, path, json=body) for s in shards), return_exceptions=True)
        return self._answered(shards, outcomes)

    def _answered(self, shards: tuple[str, ...], outcomes: list) -> tuple[list[dict], list[str]]:
        """The answers, and the shards that failed (by the failure policy); a request error is raised."""
        for outcome in outcomes:
            if isinstance(outcome, ShardError):
                raise outcome
            if isinstance(outcome, BaseException) and not isinstance(outcome, SHARD_FAILURES):
                raise outcome  # not a shard's failure: a bug here
        failed = {s: _reason(o) for s, o in zip(shards, outcomes, strict=True) if isinstance(o, BaseException)}
        answers = [o for o in outcomes if not isinstance(o, BaseException)]
        reasons = "; ".join(f"{s}: {r}" for s, r in failed.items())
        if not answers:
            raise ShardError(502, f"no shard answered: {reasons}")
        if failed and self.settings.on_missing == "error":
            raise ShardError(502, f"{len(failed)} of {len(shards)} shards did not answer: {reasons}")
        return answers, list(failed)

    async def from_any(self, path: str, what: str, **request: Any) -> dict[str, Any]:
        """The answer of the first shard that gives one, for work any shard does alike (embedding: they share the
        model; a mark's parts); `what` names it in the router's error."""
        last_error: Exception | None = None
        for shard in self.settings.shards:
            try:
                return await self.call(shard, path, **request)
            except ShardError:
                raise
            except (ShardFailed, httpx.HTTPError) as e:
                last_error = e
        raise ShardError(502, f"no shard could {what}: {_reason(last_error)}")

    async def from_holder(self, path: str, missing: str, **request: Any) -> dict[str, Any]:
        """The answer of the shard that holds the images a request names: every shard is asked, the others answer
        404. `missing`: what the router says when none holds them."""
        shards = self.settings.shards
        outcomes = await asyncio.gather(*(self.call(s, path, **request) for s in shards), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, dict):
                return outcome
        for outcome in outcomes:
            if isinstance(outcome, ShardError) and outcome.status != 404:
                raise outcome  # the request itself is wrong
            if not isinstance(outcome, (ShardError, *SHARD_FAILURES)):
                raise outcome  # not a shard's failure: a bug here
        failed = {s: _reason(o) for s, o in zip(shards, outcomes, strict=True) if isinstance(o, SHARD_FAILURES)}
        if failed:
            reasons = "; ".join(f"{s}: {r}" for s, r in failed.items())
            raise ShardError(502, f"{missing} on any shard that answered; {len(failed)} did not: {reasons}")
        raise ShardError(404, missing)

    async def schema(self) -> dict[str, Any]:
        """The OpenAPI schema of the first shard that gives it (they serve the same index)."""
        reasons = []
        for shard in self.settings.shards:
            try:
                response = await self.client.get(shard + "/openapi.json")
                if response.status_code == 200:
                    return response.json()
                reasons.append(f"{shard}: answered {response.status_code}")
            except (httpx.HTTPError, ValueError) as e:
                reasons.append(f"{shard}: {type(e).__name__}")
        raise ShardError(502, f"no shard gave its schema: {'; '.join(reasons)}")

    async def health(self) -> list[dict[str, Any]]:
        async def one(shard: str) -> dict[str, Any]:
            try:
                r = await self.client.get(shard + "/healthz")
                return {"url": shard, "ok": r.status_code == 200, **r.json()}
            except (httpx.HTTPError, ValueError) as e:
                return {"url": shard, "ok": False, "error": f"{type(e).__name__}: {e}"}
        return list(await asyncio.gather(*(one(s) for s in self.settings.shards)))

    async def search(self, vectors: list, options: dict[str, Any], labels: list, started: float,
                     drop: list[Collection[str]] | None = None, colours: list[str | None] | None = None
                     ) -> Response:
        """The merged top k of each vector. `colours`: each query's colour histogram where colour weighs; a
        request carries one histogram for all its vectors, so each query is then searched on its own."""
        if colours is None or not options.get("colour_weight"):
            answers, missing, merged = await self._searched(vectors, options, drop)
            return self._answer(answers, missing, merged, options["k"], labels, started)
        answers, missing, merged = [], set(), []
        for i, (vector, colour) in enumerate(zip(vectors, colours, strict=True)):
            some, failed, rows = await self._searched([vector], {**options, "colour": colour},
                                                      drop[i:i + 1] if drop else None)
            answers += some
            missing.update(failed)
            merged += rows
        return self._answer(answers, sorted(missing), merged, options["k"], labels, started)

    async def _searched(self, vectors: list, options: dict[str, Any], drop: list[Collection[str]] | None
                        ) -> tuple[list[dict], list[str], list[list[dict]]]:
        k = options["k"]
        if options.get("expand"):
            vectors = await self.expanded(vectors, options, drop)
            options = {**options, "expand": 0}
        body = {**options, "vectors": vectors, "k": k + dropped(drop)}
        answers, missing = await self.fan_out("/search/vectors", body)
        return answers, missing, merge(answers, k, drop)

    def _answer(self, answers: list[dict], missing: list[str], merged: list[list[dict]], k: int, labels: list,
                started: float) -> Response:
        versions = sorted({a["version"] for a in answers})
        return Response(json.dumps({
            "name": answers[0]["name"], "version": versions[0] if len(versions) == 1 else versions, "k": k,
            "took_ms": round(1000 * (time.perf_counter() - started), 2), "partial": bool(missing),
            "missing_shards": missing,
            "results": [{"query": label, "hits": hits} for label, hits in zip(labels, merged, strict=True)]}),
            media_type="application/json")

    async def search_images(self, files: list, form: dict[str, str], k: int, labels: list, started: float
                            ) -> Response:
        shards = self.settings.shards
        outcomes = await asyncio.gather(*(self.call(s, "/search/images", files=files, data=form) for s in shards),
                                        return_exceptions=True)
        answers, missing = self._answered(shards, outcomes)
        merged = merge(answers, k)
        return self._answer(answers, missing, merged, k, labels, started)

    async def expanded(self, vectors: list, options: dict[str, Any], drop: list[Collection[str]] | None) -> list:
        """αQE over the whole index, not per shard: the global top n hits of a first search (shards asked with
        expansion off), their stored vectors from the shards that hold them, and the expanded queries."""
        n = options["expand"]
        first = {**options, "vectors": vectors, "k": n + dropped(drop), "expand": 0}
        answers, _ = await self.fan_out("/search/vectors", first)
        hits = merge(answers, n, drop)
        wanted = sorted({h["image_id"] for row in hits for h in row})
        stored: dict[str, list[float]] = {}
        for lo in range(0, len(wanted), self.settings.shard_batch):  # within the shards' batch limit
            chunk = wanted[lo:lo + self.settings.shard_batch]
            found, _ = await self.fan_out("/vectors", {"image_ids": chunk})
            for answer in found:
                stored.update({i: v for i, v in zip(chunk, answer["vectors"], strict=True) if v is not None})
        queries = unit_rows(vectors)  # normalised as the workers normalise
        dim = queries.shape[1]
        neighbours = np.zeros((len(queries), n, dim), dtype=np.float32)
        scores = np.full((len(queries), n), -np.inf)
        for q, row in enumerate(hits):
            for j, h in enumerate(row):
                if h["image_id"] in stored:
                    neighbours[q, j], scores[q, j] = stored[h["image_id"]], h["cosine"]
        alpha = options.get("expand_alpha", Expansion().alpha)
        return expand(queries, neighbours, scores, Expansion(n, alpha)).tolist()
