"""Small builders for OpenAPI v3 schema nodes and CEL rules, so every field states its description."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def integer(description: str, minimum: int | None = None, maximum: int | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "integer", "description": description}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema | extra


def number(description: str, **extra: Any) -> Schema:
    return {"type": "number", "description": description} | extra


def string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description} | extra


def enum(description: str, values: tuple[Any, ...], default: Any) -> Schema:
    kind = "integer" if isinstance(default, int) and not isinstance(default, bool) else "string"
    return {"type": kind, "description": description, "enum": list(values), "default": default}


def obj(
    description: str,
    properties: dict[str, Schema],
    required: tuple[str, ...] = (),
    validations: list[dict[str, str]] | None = None,
    **extra: Any,
) -> Schema:
    schema: Schema = {"type": "object", "description": description, "properties": properties}
    if required:
        schema["required"] = list(required)
    if validations:
        schema["x-kubernetes-validations"] = validations
    return schema | extra


def rule(expression: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """A CEL rule. The API server also checks rules against `default: {}` values before nested defaults
    apply, so rules on defaulted objects guard each field with has()."""
    out = {"rule": expression, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out
