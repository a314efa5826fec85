"""`/api/docs`: the JSON API's reference, read from its OpenAPI description and rendered on the
server by a template (no script, no CDN): each operation with its parameters, body and answers,
then the shapes of the objects. Public, like the description itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from signoff.web.api import OPENAPI
from signoff.web.auth import chrome
from signoff.web.render import template
from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    anchor: str
    parameters: list[dict[str, Any]]
    body: dict[str, Any] | None
    responses: list[tuple[str, str, str | None]]  # status, description, schema name


@dataclass(frozen=True)
class ApiDocsPage:
    title: str
    description: str
    operations: list[Operation]
    schemas: dict[str, Any]


def _schema_name(response: dict[str, Any]) -> str | None:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "") if isinstance(schema, dict) else ""
    return ref.rsplit("/", 1)[-1] if ref else None


def _anchor(method: str, path: str) -> str:
    words = path.strip("/").replace("{", "").replace("}", "").replace("/", "-")
    return f"{method}-{words}"


def describe(spec: dict[str, Any]) -> ApiDocsPage:
    operations = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            operations.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    summary=op.get("summary", ""),
                    anchor=_anchor(method, path),
                    parameters=op.get("parameters", []),
                    body=body.get("schema"),
                    responses=[
                        (code, r.get("description", ""), _schema_name(r))
                        for code, r in op.get("responses", {}).items()
                    ],
                )
            )
    info = spec.get("info", {})
    return ApiDocsPage(
        title=info.get("title", "API"),
        description=info.get("description", ""),
        operations=operations,
        schemas=spec.get("components", {}).get("schemas", {}),
    )


PAGE = describe(OPENAPI)


async def page(request: Request) -> Response:
    return template(request, "pages/api_docs.html", PAGE, chrome(request, "api"))
