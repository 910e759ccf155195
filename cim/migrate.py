"""Versioned migrations: numbered SQL files in ``cim/sql/migrations`` (``NNNN_name.sql``).

Each file runs once, in its own transaction, in number order, under an advisory lock so two
processes cannot migrate at the same time. The checksum of every applied file is kept; a file
changed after it was applied is an error (write a new migration instead). After the SQL files,
the dictionaries are upserted from ``cim/seed/dictionaries.yaml`` so corrections to seeded
values (many are marked [I] in the domain digest) need no code change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg2.extensions
import yaml

from cim.db import quote_ident
from cim.errors import MigrationError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "sql" / "migrations"
SEED_FILE = Path(__file__).parent / "seed" / "dictionaries.yaml"
_LOCK_KEY = 4490_2022  # advisory lock id for migrations
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        """File contents."""
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        """SHA-256 of the file contents."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migration files, in version order; refuses duplicate numbers."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"迁移文件名不合规：{path.name}", f"bad migration file name: {path.name}")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"迁移版本重复：{version}", f"duplicate migration version {version}")
        found[version] = Migration(version, m.group(2), path)
    return [found[v] for v in sorted(found)]


def _ensure_table(cur: psycopg2.extensions.cursor) -> None:
    cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    cur.execute("CREATE SCHEMA IF NOT EXISTS cim_meta")
    cur.execute("""
        CREATE TABLE IF NOT EXISTS cim_meta.schema_migration (
            version     integer PRIMARY KEY,
            name        text NOT NULL,
            checksum    char(64) NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )""")


def applied(cur: psycopg2.extensions.cursor) -> dict[int, str]:
    """Applied versions and their checksums."""
    cur.execute("SELECT version, checksum FROM cim_meta.schema_migration")
    return dict(cur.fetchall())


def migrate(conn: psycopg2.extensions.connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations and seed dictionaries; return what was applied."""
    conn.autocommit = False
    done: list[Migration] = []
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        with conn.cursor() as cur:
            _ensure_table(cur)
        conn.commit()
        for mig in discover(directory):
            with conn.cursor() as cur:
                have = applied(cur)
                if mig.version in have:
                    if have[mig.version] != mig.checksum:
                        raise MigrationError(
                            f"已应用的迁移 {mig.path.name} 被修改，请新增迁移文件",
                            f"applied migration {mig.path.name} was modified; add a new migration instead",
                        )
                    continue
                log.info("applying migration %s", mig.path.name)
                try:
                    cur.execute(mig.sql)
                except Exception as exc:
                    conn.rollback()
                    raise MigrationError(f"迁移 {mig.path.name} 失败：{exc}",
                                         f"migration {mig.path.name} failed: {exc}") from exc
                cur.execute("INSERT INTO cim_meta.schema_migration (version, name, checksum) VALUES (%s, %s, %s)",
                            (mig.version, mig.name, mig.checksum))
            conn.commit()
            done.append(mig)
        seed_dictionaries(conn)
        _prepare_tiers(conn)
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
        conn.commit()
    return done


def _prepare_tiers(conn: psycopg2.extensions.connection) -> None:
    """On an instance with a tier identity, give tables a migration added the tier preparation
    (replica identity, read-only guard; see cim.tiers) at once."""
    from cim import tiers

    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('cim.tier_instance') IS NOT NULL")
        row = cur.fetchone()
        assert row is not None
        if row[0] and tiers.identity(cur) is not None:
            tiers.prepare(cur)
    conn.commit()


def seed_dictionaries(conn: psycopg2.extensions.connection, seed_file: Path = SEED_FILE) -> dict[str, int]:
    """Upsert every dictionary from the seed YAML in one transaction; return rows per table."""
    data = yaml.safe_load(seed_file.read_text(encoding="utf-8"))
    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'cim' AND table_name LIKE 'dict\\_%%'")
        known = {r[0] for r in cur.fetchall()}
        for table, spec in data.items():
            if table not in known:
                raise MigrationError(f"种子数据引用了不存在的字典表 {table}", f"seed names unknown dictionary {table}")
            standard = spec.get("standard")
            rows = spec["codes"]
            # parents before children so the self-reference holds
            rows = sorted(rows, key=lambda r: r.get("parent") is not None)
            for row in rows:
                attrs = {k: v for k, v in row.items() if k not in ("code", "parent", "zh", "en", "ext", "standard")}
                cur.execute(
                    f"INSERT INTO cim.{quote_ident(table)} "
                    "(code, parent_code, name_zh, name_en, standard, extension, attrs) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (code) DO UPDATE SET parent_code = EXCLUDED.parent_code, "
                    "name_zh = EXCLUDED.name_zh, name_en = EXCLUDED.name_en, standard = EXCLUDED.standard, "
                    "extension = EXCLUDED.extension, attrs = EXCLUDED.attrs",
                    (str(row["code"]), None if row.get("parent") is None else str(row["parent"]),
                     row["zh"], row.get("en"), row.get("standard", standard), bool(row.get("ext", False)),
                     json.dumps(attrs, ensure_ascii=False)),
                )
            counts[table] = len(rows)
    conn.commit()
    return counts


def prepare_database(url: str) -> list[Migration]:
    """Make a database ready for the platform: PostGIS installed, migrations applied, dictionaries seeded."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.commit()
        return migrate(conn)
    finally:
        conn.close()


def status(conn: psycopg2.extensions.connection, directory: Path = MIGRATIONS_DIR) -> list[tuple[Migration, bool]]:
    """Every migration with whether it has been applied."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('cim_meta.schema_migration')")
        row = cur.fetchone()
        have = applied(cur) if row and row[0] else {}
    conn.rollback()
    return [(m, m.version in have) for m in discover(directory)]
