"""Schema fuzzing of every service's REST API: each answer is what its OpenAPI document says.

Schemathesis generates requests from each service's ``/openapi.json`` (valid ones and
invalid ones) and checks every answer: never a 5xx, a status the operation documents, the
documented media type and headers, a body that fits the documented schema. The services
run for real (uvicorn, the embedded broker, SQLite) with a seeded book, and half the
generated path parameters and ``customer_id`` filters name what was seeded, so that the
fuzzer reaches the answers beyond 404. Requests go with a token holding every scope; a
few per operation go without one (401 is documented too).

Bounded and reproducible: a fixed number of examples per operation, derandomized, no
example database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.stack_harness import ServiceStack, seeded_stack

MAX_EXAMPLES = 50  # per operation, with a token
ANONYMOUS_EXAMPLES = 3  # per operation, without one
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    with seeded_stack(tmp_path_factory.mktemp("fuzz")) as stack:
        yield stack


def _known(stack: ServiceStack) -> dict[str, str]:
    seeded = stack.seeded
    return {"customer_id": seeded.customer_id, "invoice_id": seeded.invoice_id, "hold_id": seeded.hold_id,
            "name": seeded.policy}


def _schema(stack: ServiceStack, service: str) -> Any:
    schema = schemathesis.openapi.from_url(f"{stack.urls[service]}/openapi.json")
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    known = _known(stack)

    def with_known(values: dict[str, Any] | None) -> Any:
        values = values or {}
        named = {key: known[key] for key in values if key in known}
        return st.sampled_from([values, {**values, **named}]) if named else st.just(values)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        return with_known(path_parameters)

    @schema.hook
    def flatmap_query(context: Any, query: dict[str, Any]) -> Any:
        return with_known(query)

    return schema


@pytest.fixture(scope="module")
def ledger_schema(stack: ServiceStack) -> Any:
    return _schema(stack, "ledger")


@pytest.fixture(scope="module")
def dunning_schema(stack: ServiceStack) -> Any:
    return _schema(stack, "dunning")


@pytest.fixture(scope="module")
def credit_schema(stack: ServiceStack) -> Any:
    return _schema(stack, "credit")


ledger = schemathesis.pytest.from_fixture("ledger_schema")
dunning = schemathesis.pytest.from_fixture("dunning_schema")
credit = schemathesis.pytest.from_fixture("credit_schema")

# (schemathesis draws some values with `random`, which Hypothesis seeds when derandomized)
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module")
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck))
ANONYMOUS = settings(FUZZ, max_examples=ANONYMOUS_EXAMPLES)


# (operation, status) -> how many answers, over the module's fuzz tests with a token
ANSWERS: Counter[tuple[str, int]] = Counter()


def _call(case: Any, stack: ServiceStack, service: str, *, token: bool) -> None:
    response = case.call_and_validate(headers=stack.headers() if token else None, checks=CHECKS, timeout=30)
    if token:
        ANSWERS[f"{service} {case.operation.label}", response.status_code] += 1


@ledger.parametrize()
@FUZZ
def test_ledger_answers_as_documented(case: Any, stack: ServiceStack) -> None:
    _call(case, stack, "ledger", token=True)


@dunning.parametrize()
@FUZZ
def test_dunning_answers_as_documented(case: Any, stack: ServiceStack) -> None:
    _call(case, stack, "dunning", token=True)


@credit.parametrize()
@FUZZ
def test_credit_answers_as_documented(case: Any, stack: ServiceStack) -> None:
    _call(case, stack, "credit", token=True)


@ledger.parametrize()
@ANONYMOUS
def test_ledger_without_a_token(case: Any, stack: ServiceStack) -> None:
    _call(case, stack, "ledger", token=False)


@dunning.parametrize()
@ANONYMOUS
def test_dunning_without_a_token(case: Any, stack: ServiceStack) -> None:
    _call(case, stack, "dunning", token=False)


@credit.parametrize()
@ANONYMOUS
def test_credit_without_a_token(case: Any, stack: ServiceStack) -> None:
    _call(case, stack, "credit", token=False)


def test_the_fuzzer_reached_the_handlers(stack: ServiceStack) -> None:
    """Run after the fuzz tests above (the module's order): the operations of all three services
    answered, and every read of the seeded book answered 200 at least once, so the fuzzer got
    past auth and 404."""
    assert ANSWERS, "the fuzz tests above fill ANSWERS: run this module as a whole"
    operations = {operation for operation, _ in ANSWERS}
    assert len(operations) >= 30, sorted(operations)
    succeeded = {operation for operation, status in ANSWERS if status < 300}
    reads = {f"{service} GET {path}" for service, path in (
        ("ledger", "/invoices/{invoice_id}"), ("ledger", "/customers/{customer_id}/balance"),
        ("ledger", "/audit/customers/{customer_id}"), ("dunning", "/customers/{customer_id}/dunning"),
        ("dunning", "/notices"), ("credit", "/customers/{customer_id}/credit"), ("credit", "/holds"),
        ("credit", "/audit/customers/{customer_id}"))}
    assert reads <= succeeded, sorted(reads - succeeded)
    assert not {status for _, status in ANSWERS if status >= 500}, ANSWERS

