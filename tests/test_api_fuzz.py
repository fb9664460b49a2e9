"""Requests generated from the OpenAPI schema, valid and invalid, against the app serving a
real index: no 5xx, every status documented, every response as the schema says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from config.settings import Settings
from retrieval_api.app import create_app
from retrieval_api.keys import KeyStore
from tests.conftest import examples, ingest_folder

SPEC = create_app(Settings()).openapi()
SCHEMA = schemathesis.openapi.from_dict(SPEC)
REQUEST = jsonschema.Draft202012Validator(
    {"$ref": "#/components/schemas/RetrieveRequest", "components": SPEC["components"]}
)
"""A client's own check of a request body against the published schema."""
RETRIEVE = SCHEMA["/retrieve"]["POST"]
CASES = st.one_of(
    st.tuples(st.just("valid"), RETRIEVE.as_strategy(generation_mode=GenerationMode.POSITIVE)),
    st.tuples(st.just("invalid"), RETRIEVE.as_strategy(generation_mode=GenerationMode.NEGATIVE)),
)
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@pytest.fixture(scope="module")
def served(  # type: ignore[no-untyped-def]
    tmp_path_factory: pytest.TempPathFactory, embedder
) -> Iterator[tuple[TestClient, str]]:
    """Two small documents of two tenants, keys required; an admin key, so that a generated
    `filters.tenants` reaches the search rather than a 403."""
    root = tmp_path_factory.mktemp("fuzz")
    settings_ = Settings(data_dir=root / "data", auth="required")
    for tenant in ("acme", "globex"):
        folder = root / tenant
        folder.mkdir()
        (folder / "notes.md").write_text(f"# {tenant}\n\nPumps, valves and seals of {tenant}.\n")
        ingest_folder(settings_, folder, embedder, source_name=tenant, tenant=tenant)
    key, _ = KeyStore(settings_.api_keys_path).create([], scope="admin")
    with TestClient(create_app(settings_), base_url="http://localhost") as client:
        yield client, key


def test_generated_requests_never_get_a_5xx_or_an_undocumented_answer(
    served: tuple[TestClient, str],
) -> None:
    """And the server accepts a body exactly when a JSON-schema validator does: the schema
    states every constraint the server enforces, and nothing it does not. Two refusals no
    schema can state: a body over `SLUICE_MAX_BODY_BYTES` (413), and a cursor the server did
    not sign (400 `invalid_cursor`: a generated one never is). Both kinds of request must have
    reached the server, and generated cursors (valid in shape, never signed) among the valid."""
    client, key = served
    statuses: dict[tuple[str, int], int] = {}
    runs = examples(1000, 150)

    @settings(
        max_examples=runs,
        database=None,
        # The counts below are of what was generated: in a bounded run a random draw can miss
        # the rare kinds (1 signed-looking cursor in 150 once, against 3 wanted), so a bounded
        # run draws the same examples every time; the deep profile draws afresh.
        derandomize=settings.get_current_profile_name() != "deep",
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(generated=CASES)
    def one_request(generated: tuple[str, Any]) -> None:
        _, case = generated
        arguments = case.as_transport_kwargs(base_url="")
        headers = arguments.get("headers") or {}
        arguments["headers"] = {**headers, "Authorization": f"Bearer {key}"}
        response = client.request(**arguments)
        if "json" in arguments:
            by_schema = REQUEST.is_valid(arguments["json"])
            kind = "valid" if by_schema else "invalid"
        else:
            by_schema, kind = False, "not JSON"
        statuses[kind, response.status_code] = statuses.get((kind, response.status_code), 0) + 1
        case.validate_response(response, checks=CHECKS)
        if not by_schema:
            assert response.status_code in (400, 413, 422), (arguments, response.text)
        elif len(response.request.content) > Settings().max_body_bytes:
            assert response.status_code == 413, response.text
        elif arguments["json"].get("cursor") is not None:
            assert response.status_code == 400, (arguments["json"], response.text)
            assert response.json()["error"]["code"] == "invalid_cursor"
        else:
            assert response.status_code == 200, (arguments["json"], response.text)

    one_request()
    total = sum(statuses.values())
    print(f"\n{total} generated requests, by kind and status: {dict(sorted(statuses.items()))}")
    assert statuses.get(("valid", 200), 0) >= runs // 5, statuses
    assert statuses.get(("valid", 400), 0) >= runs // 50, statuses
    assert statuses.get(("invalid", 422), 0) >= runs // 5, statuses


def test_the_schema_states_what_the_server_enforces() -> None:
    """A client generated from the schema knows the bounds and types it will be held to."""
    schema = create_app(Settings()).openapi()
    retrieve = schema["paths"]["/retrieve"]["post"]
    assert {"400", "401", "403", "408", "413", "422", "429", "503"} <= set(retrieve["responses"])
    components = schema["components"]["schemas"]
    metadata = components["MetadataFilters"]
    assert metadata["additionalProperties"] is False
    pages = metadata["properties"]["pages"]["anyOf"]
    bounds = next(p for p in pages if p.get("type") == "integer")
    assert (bounds["minimum"], bounds["maximum"]) == (-(2**53 - 1), 2**53 - 1)
    assert components["Filters"]["properties"]["doc_ids"]["anyOf"][0]["maxItems"] == 1000


def _declared(path: str, method: str, answer: Any) -> None:
    """The answer's status is one the schema lists for the route, and its body is as listed
    (`answer`: a test client's response)."""
    responses = SPEC["paths"][path][method]["responses"]
    status = str(answer.status_code)
    assert status in responses, (path, method, status, sorted(responses))
    media = answer.headers["content-type"].split(";")[0]
    content = responses[status].get("content", {})
    declared = next((c for m, c in content.items() if m.split(";")[0] == media), None)
    assert declared is not None, (path, status, media, sorted(content))
    if media == "application/json":
        schema = {**declared["schema"], "components": SPEC["components"]}
        jsonschema.validate(answer.json(), schema, cls=jsonschema.Draft202012Validator)


def test_every_answer_of_every_route_is_in_the_schema(served: tuple[TestClient, str]) -> None:
    """Before, the schema left out /metrics' 401 and 403, every GET route's 413 and 408
    (every body is read), and the Host check's text 400."""
    client, admin = served
    keys = client.app.state.access.keys  # type: ignore[attr-defined]
    reader, _ = keys.create(["acme"])
    big = {"Content-Length": str(Settings().max_body_bytes + 1)}
    probes: list[tuple[str, str, dict[str, str], dict[str, Any] | None, int]] = [
        ("/metrics", "get", {}, None, 401),
        ("/metrics", "get", {"Authorization": f"Bearer {reader}"}, None, 403),
        ("/metrics", "get", {"Authorization": f"Bearer {admin}"}, None, 200),
        ("/metrics", "get", {"Authorization": f"Bearer {admin}", **big}, None, 413),
        ("/health", "get", {}, None, 200),
        ("/health", "get", big, None, 413),
        ("/health", "get", {"Host": "rebinding.example"}, None, 400),
        ("/ready", "get", {}, None, 200),
        ("/ready", "get", big, None, 413),
        ("/retrieve", "post", {}, {"query": "pumps"}, 401),
        ("/retrieve", "post", {"Host": "rebinding.example"}, {"query": "pumps"}, 400),
        (
            "/retrieve",
            "post",
            {"Authorization": f"Bearer {reader}"},
            {"query": "pumps", "filters": {"tenants": ["globex"]}},
            403,
        ),
        (
            "/retrieve",
            "post",
            {"Authorization": f"Bearer {reader}"},
            {"query": "pumps", "cursor": "eyJ2IjoyfQ." + "A" * 43},
            400,
        ),
    ]
    for path, method, headers, body, expected in probes:
        answer = client.request(method.upper(), path, headers=headers, json=body)
        assert answer.status_code == expected, (path, headers, answer.text)
        _declared(path, method, answer)


def test_a_surrogate_in_a_key_or_value_is_a_422(served: tuple[TestClient, str]) -> None:
    client, key = served
    for body in (
        '{"query": "x", "filters": {"doc_ids": ["\\ud800"]}}',
        '{"query": "\\udfff"}',
        '{"query": "x", "filters": {"metadata": {"\\ud800": "x"}}}',
    ):
        answer = client.post(
            "/retrieve",
            content=body,
            headers={"content-type": "application/json", "Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 422, (body, answer.text)


def test_probes_from_the_hostile_client_report(
    served: tuple[TestClient, str], tmp_path: Path
) -> None:
    """The requests that answered 500 before filters were typed now answer 4xx."""
    client, key = served
    headers = {"Authorization": f"Bearer {key}"}
    probes: list[dict[str, Any]] = [
        {"query": "x", "filters": {"metadata": {"pages": 1.5}}},
        {"query": "x", "filters": {"metadata": {"pages": [1.5, 2.5]}}},
        {"query": "x", "filters": {"metadata": {"filetype": ["md", 1]}}},
        {"query": "x", "filters": {"metadata": {"pages": 2**63}}},
        {"query": "x", "filters": {"metadata": {"pages": 2**53}}},
        {"query": "x", "filters": {"metadata": {"pages": [True, False]}}},
        {"query": "x", "filters": {"metadata": {"doc_id": ["a"] * 5000}}},
        {"query": "x", "top_k": "10"},
        {"query": "x", "top_k": 5.5},
        {"query": "x", "top_k": True},
    ]
    for body in probes:
        assert client.post("/retrieve", json=body, headers=headers).status_code in (413, 422)
    nan = client.post(
        "/retrieve",
        content='{"query": "x", "rerank_blend": NaN}',
        headers={**headers, "content-type": "application/json"},
    )
    assert nan.status_code == 422
    wrong_method = client.get("/retrieve", headers=headers)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
