"""A bounded, seeded fuzz of one API operation against what its OpenAPI schema documents (schemathesis)."""

from __future__ import annotations

import hypothesis
from schemathesis import GenerationMode


def fuzz(operation, mode: GenerationMode, checks=None, excluded=(), headers: dict | None = None) -> None:
    """20 seeded cases of `operation` in `mode` (schema-valid POSITIVE or schema-breaking NEGATIVE), each answered
    as documented (`checks`: all of schemathesis's by default, less `excluded`)."""
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=20, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    def keeps_contract(case):
        case.call_and_validate(headers=headers, checks=checks, excluded_checks=list(excluded))
    keeps_contract()
