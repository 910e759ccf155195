"""The code dictionaries (``cim.dict_*`` tables, seeded from ``cim/seed/dictionaries.yaml``) as rows."""

from __future__ import annotations

import json

import asyncpg

from cim import dbcall
from cim.db import quote_ident
from cim.errors import NotFound

_EXISTS = "SELECT 1 FROM information_schema.tables WHERE table_schema = 'cim' AND table_name = $1"


def _not_found(table: str) -> NotFound:
    return NotFound(f"没有字典 {table}", f"no dictionary {table}")


async def rows(pool: asyncpg.Pool, table: str) -> list[dict]:
    """Rows of the dictionary ``table`` by code: ``[{code, parent_code, name_zh, name_en, attrs}]``.

    NotFound unless ``table`` is a plain ``dict_*`` name of an existing table (checked against
    the catalogue of the database before it is quoted into the statement).
    """
    if not table.startswith("dict_") or len(table) > 63 or not table.replace("_", "").isalnum() or not table.isascii():
        raise _not_found(table)
    async with pool.acquire() as conn:
        if not await dbcall.run(conn, "fetchval", _EXISTS, table):
            raise _not_found(table)
        found = await dbcall.run(conn, "fetch", f"SELECT code, parent_code, name_zh, name_en, attrs::text AS attrs "
                                                f"FROM cim.{quote_ident(table)} ORDER BY code")
    return [{"code": r["code"], "parent_code": r["parent_code"], "name_zh": r["name_zh"], "name_en": r["name_en"],
             "attrs": json.loads(r["attrs"]) if r["attrs"] else {}} for r in found]
