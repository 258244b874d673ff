"""Routes that read a body: declared once, with FastAPI's decorator and the rule for the body, and
served by the front (app/http/front.py) straight from that declaration.

A route is one FastAPI declaration: its parameters are the endpoint's signature (`Query`, `Header`,
path parameters), its responses and summary are FastAPI's options, and its API key is the
`require_api_key` dependency its router is included with. For a route that reads a body,
`post_with_body` adds a `RequestBody`: the body's OpenAPI description and, from the settings, its
limits. The OpenAPI document is FastAPI's own, made from that declaration, and the front
dispatches from the same declaration: the parameters are the fields FastAPI made of the signature,
validated by those fields as FastAPI validates them (with FastAPI's error for a missing one), and
the dependency says whether the front checks the key. What the front cannot honour cannot be
declared: `direct_routes` refuses a route that reads a body without a rule, or whose endpoint asks
for more than the front gives."""

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi._compat import ModelField, field_annotation_is_scalar
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_missing_field_error
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.requests import Request
from starlette.responses import Response

from app.http.limits import BodyRule
from app.http.security import require_api_key
from app.settings import Settings

_REQUEST_BODY_ATTRIBUTE = "request_body"
_METHODS_WITH_BODIES = {"POST", "PUT", "PATCH"}
_REQUEST_ATTRIBUTES = {"path": "path_params", "query": "query_params", "header": "headers"}


class RouteDeclarationError(TypeError):
    """A route declared in a way the front cannot serve as declared."""


@dataclass(frozen=True)
class RequestBody:
    """What a route reads as its body: how OpenAPI describes it, and its limits under the settings."""

    openapi: dict[str, Any]
    rule: Callable[[Settings], BodyRule]


def post_with_body(register: Callable[..., Callable], path: str, body: RequestBody, **options: Any) -> Callable:
    """`@router.post(path, **options)` for a route that reads `body`: documented with it, served within it."""
    extra = {**options.pop("openapi_extra", {}), "requestBody": body.openapi}

    def declare(endpoint: Callable) -> Callable:
        setattr(endpoint, _REQUEST_BODY_ATTRIBUTE, body)
        return register(path, openapi_extra=extra, **options)(endpoint)

    return declare


def without_parameter(endpoint: Callable, name: str) -> Callable:
    """The endpoint with one keyword parameter fixed to None and gone from its signature, so that FastAPI
    neither documents nor reads it: one function serves a path with that parameter and one without."""
    signature = inspect.signature(endpoint)

    async def fixed(**arguments: Any) -> Any:
        return await endpoint(**arguments, **{name: None})

    fixed.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[parameter for parameter in signature.parameters.values() if parameter.name != name]
    )
    fixed.__name__ = fixed.__qualname__ = f"{endpoint.__name__}_without_{name}"
    fixed.__doc__ = endpoint.__doc__
    if hasattr(endpoint, _REQUEST_BODY_ATTRIBUTE):
        setattr(fixed, _REQUEST_BODY_ATTRIBUTE, getattr(endpoint, _REQUEST_BODY_ATTRIBUTE))
    return fixed


@dataclass(frozen=True)
class Parameter:
    """A path, query or header parameter of a body route, read from the request as FastAPI reads it."""

    field: ModelField
    location: str  # "path", "query" or "header"
    key: str  # the name it has in the request
    required: bool
    default: Any

    def read(self, request: Request) -> tuple[Any, list[Any]]:
        """Its value, or FastAPI's validation errors for it."""
        value = getattr(request, _REQUEST_ATTRIBUTES[self.location]).get(self.key)
        if value is None:
            return (None, [get_missing_field_error((self.location, self.key))]) if self.required else (self.default, [])
        return self.field.validate(value, {}, loc=(self.location, self.key))


@dataclass(frozen=True)
class DirectRoute:
    """A route the front serves itself: the route as declared, its body's rule, the key it requires (None:
    open), and its parameters."""

    route: RouteContext  # the route as its routers' inclusion made it: full path, their dependencies
    rule: BodyRule
    api_key: str | None
    parameters: tuple[Parameter, ...]

    async def call(self, request: Request) -> Response:
        dependant = self.route.dependant
        arguments: dict[str, Any] = {dependant.request_param_name: request} if dependant.request_param_name else {}
        errors: list[Any] = []
        for parameter in self.parameters:
            value, problems = parameter.read(request)
            arguments[parameter.field.name] = value
            errors.extend(problems)
        if errors:
            raise RequestValidationError(errors)
        endpoint: Callable[..., Awaitable[Response]] = self.route.endpoint
        return await endpoint(**arguments)


def direct_routes(app: FastAPI, settings: Settings) -> list[DirectRoute]:
    """Every route of the app that reads a body, as the front serves it; RouteDeclarationError for one
    that is not declared so that the front can serve it exactly as declared."""
    table = []
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        body: RequestBody | None = getattr(route.endpoint, _REQUEST_BODY_ATTRIBUTE, None)
        if body is None:
            if route.methods & _METHODS_WITH_BODIES:
                raise RouteDeclarationError(
                    f"{'/'.join(sorted(route.methods))} {route.path} reads a body but declares no rule for it: "
                    "declare it with post_with_body"
                )
            continue
        api_key = settings.api_key if _keyed(route) else None
        table.append(DirectRoute(route, body.rule(settings), api_key, _parameters(route)))
    return table


def _keyed(route: RouteContext) -> bool:
    """Whether the route depends on the API key; RouteDeclarationError when it asks for anything the front
    does not give."""
    dependant = route.dependant
    unserved = _unserved(dependant)
    if unserved:
        raise RouteDeclarationError(
            f"{route.path} reads a body, so the front serves it: its endpoint may take the request, path, "
            f"query and header parameters, and the API key dependency; it asks for {', '.join(unserved)}"
        )
    return len(dependant.dependencies) > 0


def _unserved(dependant: Dependant) -> list[str]:
    unserved = [
        f"the dependency {getattr(dependency.call, '__name__', dependency.call)}"
        for dependency in dependant.dependencies
        if dependency.call is not require_api_key
    ]
    unserved += [f"the body parameter {field.name!r}" for field in dependant.body_params]
    unserved += [f"the cookie {field.name!r}" for field in dependant.cookie_params]
    return unserved


def _parameters(route: RouteContext) -> tuple[Parameter, ...]:
    """The endpoint's path, query and header parameters; RouteDeclarationError for a kind that FastAPI reads
    in a way of its own (a list, a model of parameters, alias choices), which the front does not."""
    dependant = route.dependant
    parameters = []
    for location, fields in (
        ("path", dependant.path_params),
        ("query", dependant.query_params),
        ("header", dependant.header_params),
    ):
        for field in fields:
            info = field.field_info
            if not field_annotation_is_scalar(info.annotation) or info.validation_alias not in (None, field.alias):
                raise RouteDeclarationError(
                    f"{route.path} reads a body, so the front serves it: its {location} parameter {field.name!r} "
                    "must be a single value under one name"
                )
            key = field.alias
            if location == "header" and getattr(info, "convert_underscores", False) and key == field.name:
                key = key.replace("_", "-")
            parameters.append(Parameter(field, location, key, info.is_required(), field.default))
    return tuple(parameters)
