"""The one table from domain errors to HTTP statuses, and the handlers that use it.

Error bodies are ``{"code", "message_zh", "message_en", "request_id"}``. Database error text is
logged, never sent to the client. Unexpected exceptions become a 500 with only a request id,
so the server stays up and leaks nothing.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cim import errors as e

log = logging.getLogger(__name__)

STATUS: dict[type[e.CimError], int] = {
    e.NotFound: 404,
    e.Unauthenticated: 401,
    e.Forbidden: 403,
    e.Conflict: 409,
    e.PayloadTooLarge: 413,
    e.CrsError: 400,
    e.UnreadableInput: 400,
    e.InvalidInput: 400,
    e.IngestRejected: 422,
    e.QueryTimeout: 503,
    e.DatabaseUnavailable: 503,
    e.ConfigError: 500,
    e.MigrationError: 500,
}


def status_for(exc: e.CimError) -> int:
    """Most specific status for an error class (walks the MRO)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(code: str, zh: str, en: str, request_id: str, detail: object | None = None) -> dict:
    """Bilingual error body."""
    body: dict[str, object] = {"code": code, "message_zh": zh, "message_en": en, "request_id": request_id}
    if detail:
        body["detail"] = detail
    return body


def _rid(request: Request) -> str:
    return request.headers.get("x-request-id") or uuid.uuid4().hex[:12]


def _server_error(request: Request, status: int) -> None:
    """Tell the app's recorder about a 5xx answer (the heartbeat counts them; see api.routers.tiers)."""
    hook = getattr(request.app.state, "on_server_error", None)
    if hook is not None:
        hook(request, status)


async def _cim_error(request: Request, exc: e.CimError) -> JSONResponse:
    status = status_for(exc)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
        _server_error(request, status)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(exc.code, exc.zh, exc.en, _rid(request), exc.detail or None),
                        status_code=status, headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [{"loc": list(err.get("loc", ())), "msg": err.get("msg")} for err in exc.errors()]
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return JSONResponse(error_body("invalid_input", "请求体不是有效的 JSON", "the request body is not valid JSON",
                                       _rid(request), problems), status_code=400)
    where = ", ".join(".".join(str(p) for p in pr["loc"]) for pr in problems)
    return JSONResponse(error_body("invalid_input", f"请求参数无效：{where}", f"invalid request parameters: {where}",
                                   _rid(request), problems), status_code=400)


_HTTP_TEXT = {400: ("请求体无法解析（JSON 格式错误或嵌套过深）", "the request body cannot be parsed (malformed or too deeply nested JSON)"),
              404: ("资源不存在", "not found"), 405: ("不支持的请求方法", "method not allowed"),
              406: ("无法提供所请求的格式", "requested format not available"),
              413: ("请求体过大", "request body too large")}


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    zh, en = _HTTP_TEXT.get(exc.status_code, ("请求错误", str(exc.detail)))
    return JSONResponse(error_body("http_" + str(exc.status_code), zh, en, _rid(request)),
                        status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    rid = _rid(request)
    name = type(exc).__name__
    if name in ("QueryCanceledError", "QueryCanceled"):  # statement_timeout (asyncpg / psycopg2)
        _server_error(request, 503)
        return JSONResponse(error_body("query_timeout", "查询超时，请缩小范围后重试",
                                       "query timed out; narrow it down and retry", rid), status_code=503)
    log.exception("unhandled error %s on %s %s", rid, request.method, request.url.path)
    _server_error(request, 500)
    return JSONResponse(error_body("internal", "服务器内部错误，请联系管理员并提供请求编号",
                                   "internal server error; quote the request id to the administrator", rid),
                        status_code=500)


def install(app: FastAPI) -> None:
    """Register the handlers on an app."""
    # Starlette types a handler as taking any Exception; it calls each with the class registered.
    app.add_exception_handler(e.CimError, _cim_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
