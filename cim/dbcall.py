"""Running builder SQL on the asyncpg pool: database errors become domain errors.

Every domain module that answers the API (``layers.section``, ``layers.stats``, ``layers.lookup``,
``layers.search``, ``layers.features``) runs its statements through :func:`run`.

The statement timeout set on every pooled connection turns into :class:`QueryTimeout` (503);
errors a request's values can cause (a value out of range for its type, a geometry PostGIS
cannot transform or process) become :class:`InvalidInput` (400). Database text is logged,
never sent to the client.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from cim.errors import InvalidInput, QueryTimeout

log = logging.getLogger(__name__)

# SQLSTATE classes caused by request values rather than by the server
_INPUT_ERRORS = (asyncpg.exceptions.DataError, asyncpg.exceptions.InternalServerError,
                 asyncpg.exceptions.UndefinedFunctionError, asyncpg.exceptions.DatatypeMismatchError,
                 asyncpg.exceptions.InvalidParameterValueError)


def timeout_error() -> QueryTimeout:
    """The bilingual 503 for a statement that ran past the statement timeout."""
    return QueryTimeout("查询超时，请缩小范围或增加过滤条件后重试",
                        "the query timed out; narrow the area or add filters and retry")


async def run(conn: asyncpg.Connection | asyncpg.Pool, method: str, sql: str, *args: Any) -> Any:
    """``conn.fetch`` / ``fetchrow`` / ``fetchval`` with the error mapping above (a pool acquires
    a connection for the one statement)."""
    try:
        return await getattr(conn, method)(sql, *args)
    except (asyncpg.exceptions.QueryCanceledError, TimeoutError) as exc:  # server or client-side timeout
        raise timeout_error() from exc
    except _INPUT_ERRORS as exc:
        log.info("query rejected (%s): %s", type(exc).__name__, exc)
        if getattr(exc, "sqlstate", None) == "22021":  # character_not_in_repertoire: NUL in a text value
            raise InvalidInput("文本参数中含有数据库不接受的字符（如 NUL 空字符）",
                               "a text parameter contains a character the database does not accept (e.g. NUL)",
                               sqlstate="22021") from exc
        raise InvalidInput("查询参数无法执行（数值超出范围或几何无效）",
                           "the query cannot run with these parameters (a value out of range or an invalid geometry)",
                           sqlstate=getattr(exc, "sqlstate", None)) from exc

