"""``cim backup``: a consistent copy of the database and the files it refers to.

A backup is a directory (not an archive: the dump is already compressed, and a directory can be
copied, synced and checked file by file)::

    OUT/
      manifest.json          what was backed up, with row counts, table checksums and file sha256
      database.dump          pg_dump custom format (-Fc) of the platform schemas
      files/<set>/<path>     the file sets below, relative to their folder

Consistency: one REPEATABLE READ transaction exports its snapshot (``pg_export_snapshot()``);
pg_dump runs with ``--snapshot`` on it while the same transaction counts the rows and computes
the checksum of every table, so dump and manifest describe the same instant. Files are copied
after the snapshot was taken: every file a row of the snapshot names already exists then (the
platform writes a file before it commits the row naming it, and never rewrites one).

Table checksums (``md5-rowsum-v1``): every row's text (the row constructor over all columns,
with the session's text output fixed, see :data:`TEXT_OUTPUT`) is hashed with md5, and the two
64-bit halves of the hashes are summed modulo 2^64. The sum is independent of row order and
physical layout, so a restored database gives the same value. Columns that hold absolute paths
into a file set are hashed relative to the set's folder, so a restore under another
``$CIM_HOME`` (where those paths are rewritten) gives the same checksums too.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import psycopg2.extensions

from cim import auth, db, migrate
from cim.embedded import find_bindir
from cim.errors import BackupRejected, CimError, ConfigError, InvalidInput
from cim.settings import DatabaseSettings, Settings

log = logging.getLogger(__name__)

FORMAT = "cim-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DUMP = "database.dump"
FILES = "files"
CHECKSUM_METHOD = "md5-rowsum-v1"

# Text output of the session that computes checksums: the same values must print the same text
# on every server and in every client session.
TEXT_OUTPUT = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
    "lc_monetary": "C",
}

# Names inside file-set folders that are work in progress, never data: an ingest's half-written
# archive copy, a DEM being stored, a restore being staged.
_SKIP_DIR_PREFIXES = (".incoming-", ".restore-")
_SKIP_FILE_SUFFIXES = (".tmp",)


# --- file sets ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileSet:
    """A folder of files the database refers to by absolute path.

    ``folder`` says where the set lives on this host; ``references`` are the columns
    (``schema.table.column``) that hold absolute paths into it. A referenced table that does not
    exist (yet) is skipped, so a set can be declared before the table that points into it.
    """

    name: str
    folder: Callable[[Settings], Path]
    references: tuple[str, ...] = ()


def home_folder(name: str) -> Callable[[Settings], Path]:
    """``$CIM_HOME/<name>``: where the sets without a setting of their own live."""
    return lambda settings: settings.db.home_dir / name


# Every file set a backup carries. A new folder under $CIM_HOME is one more line here.
FILE_SETS: tuple[FileSet, ...] = (
    FileSet("archive", lambda settings: settings.archive_dir, ("cim.delivery.archive_path",)),
    FileSet("dem", home_folder("dem"), ("cim.dem.file_path",)),
    FileSet("attachments", home_folder("attachments")),
)


def file_set(name: str) -> FileSet:
    """The declared set of that name (a set unknown to this version lands in ``$CIM_HOME/<name>``)."""
    for fs in FILE_SETS:
        if fs.name == name:
            return fs
    return FileSet(name, home_folder(name))


def set_root(fs: FileSet, settings: Settings) -> Path:
    """Absolute folder of a set on this host."""
    return Path(fs.folder(settings)).expanduser().resolve()


def host_sets(settings: Settings) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Set name → (folder on this host, referencing columns) for every declared set."""
    return {fs.name: (str(set_root(fs, settings)), fs.references) for fs in FILE_SETS}


def path_columns(tables: Mapping[str, list[str]],
                 sets: Mapping[str, tuple[str, tuple[str, ...] | list[str]]]) -> dict[str, dict[str, tuple[str, str]]]:
    """``schema.table`` → {column → (set name, folder with trailing slash)} for the referencing
    columns of ``sets`` (name → (folder, columns)) that exist in ``tables``."""
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for name, (root, references) in sets.items():
        for ref in references:
            table, _, column = ref.rpartition(".")
            if column in tables.get(table, ()):
                out.setdefault(table, {})[column] = (name, root.rstrip("/") + "/")
    return out


# --- catalogue and checksums -------------------------------------------------------------------

def fix_text_output(cur: psycopg2.extensions.cursor) -> None:
    """Set :data:`TEXT_OUTPUT` for the current transaction."""
    for name, value in TEXT_OUTPUT.items():
        cur.execute("SELECT set_config(%s, %s, true)", (name, value))


def platform_schemas(cur: psycopg2.extensions.cursor) -> list[str]:
    """The platform's schemas: ``cim``, ``cim_meta`` and any other ``cim_*``."""
    cur.execute("SELECT nspname FROM pg_namespace WHERE nspname = 'cim' OR nspname LIKE 'cim\\_%' ORDER BY 1")
    return [r[0] for r in cur.fetchall()]


def platform_tables(cur: psycopg2.extensions.cursor) -> dict[str, list[str]]:
    """Every table of the platform schemas (``schema.table``) with its columns in order."""
    cur.execute("""
        SELECT n.nspname || '.' || c.relname,
               coalesce(array_agg(a.attname::text ORDER BY a.attnum)
                        FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped), '{}')
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid
        WHERE c.relkind IN ('r', 'p') AND (n.nspname = 'cim' OR n.nspname LIKE 'cim\\_%')
        GROUP BY 1 ORDER BY 1""")
    return {name: list(cols) for name, cols in cur.fetchall()}


def qualified_table(table: str) -> str:
    """Quoted ``schema.table`` of a catalogue name."""
    schema, _, name = table.partition(".")
    try:
        return f"{db.quote_ident(schema)}.{db.quote_ident(name)}"
    except ValueError as exc:
        raise ConfigError(f"表名不是普通标识符，无法校验：{table}", f"table name is not a plain identifier: {table}") from exc


def table_digest(cur: psycopg2.extensions.cursor, table: str, columns: list[str],
                 paths: dict[str, tuple[str, str]] | None = None) -> tuple[int, str]:
    """Row count and ``md5-rowsum-v1`` checksum of one table (see the module docstring).

    ``paths``: column → (set name, folder with trailing slash); such a column is hashed as
    ``@<set>/<path relative to the folder>`` when it lies in the folder.
    """
    parts: list[str] = []
    params: list[str] = []
    for col in columns:
        try:
            ref = "t." + db.quote_ident(col)
        except ValueError as exc:
            raise ConfigError(f"{table} 的列名不是普通标识符：{col}",
                              f"column of {table} is not a plain identifier: {col}") from exc
        if paths and col in paths:
            name, root = paths[col]
            parts.append(f"CASE WHEN starts_with({ref}::text, %s) THEN %s || substr({ref}::text, length(%s) + 1) "
                         f"ELSE {ref}::text END")
            params += [root, f"@{name}/", root]
        else:
            parts.append(ref)
    row = f"ROW({', '.join(parts)})::text" if parts else "''"
    cur.execute(
        "SELECT count(*), coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint), 0)::text, "
        "coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint), 0)::text "
        f"FROM (SELECT md5({row}) AS h FROM {qualified_table(table)} t) d", params)
    counted = cur.fetchone()
    assert counted is not None  # an aggregate returns one row
    n, hi, lo = counted
    return int(n), f"{int(hi) % 2**64:016x}{int(lo) % 2**64:016x}"


def table_digests(cur: psycopg2.extensions.cursor,
                  sets: Mapping[str, tuple[str, tuple[str, ...] | list[str]]]) -> dict[str, dict[str, Any]]:
    """``schema.table`` → {rows, checksum, columns} for every platform table, in the current
    transaction (whose text output this fixes). ``sets``: see :func:`path_columns`."""
    fix_text_output(cur)
    tables = platform_tables(cur)
    by_table = path_columns(tables, sets)
    out = {}
    for table, columns in tables.items():
        rows, checksum = table_digest(cur, table, columns, by_table.get(table))
        out[table] = {"rows": rows, "checksum": checksum, "columns": columns}
    return out


def compare_tables(expected: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]) -> list[str]:
    """Differences between two ``table_digests`` results, one line per table (empty when equal)."""
    problems = []
    for table in sorted(set(expected) | set(actual)):
        e, a = expected.get(table), actual.get(table)
        if a is None:
            problems.append(f"{table}: missing / 缺少此表")
        elif e is None:
            problems.append(f"{table}: not in the backup / 备份中没有此表")
        elif e["rows"] != a["rows"]:
            problems.append(f"{table}: {a['rows']} rows, backup has {e['rows']} / 行数 {a['rows']}，备份为 {e['rows']}")
        elif e["checksum"] != a["checksum"]:
            problems.append(f"{table}: checksum {a['checksum']} ≠ {e['checksum']} / 内容校验不一致")
    return problems


# --- PostgreSQL client programs ----------------------------------------------------------------

def client_tool(name: str, settings: DatabaseSettings) -> Path:
    """``pg_dump`` / ``pg_restore`` / ``psql`` of the PostgreSQL the platform runs with
    (``CIM_PG_BINDIR``, else the newest installed major, else ``PATH``)."""
    if settings.pg_bindir and (settings.pg_bindir / name).exists():
        return settings.pg_bindir / name
    try:
        candidate = find_bindir(settings.pg_bindir) / name
        if candidate.exists():
            return candidate
    except CimError:
        pass
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ConfigError(f"未找到 PostgreSQL 客户端程序 {name}，请安装 postgresql-client 或设置 CIM_PG_BINDIR",
                      f"PostgreSQL client program {name} not found; install postgresql-client or set CIM_PG_BINDIR")


def tool_version(tool: Path) -> tuple[int, str]:
    """Major version and version line of a PostgreSQL program."""
    res = subprocess.run([str(tool), "--version"], capture_output=True, text=True)
    m = re.search(r"(\d+)(?:\.\d+)?", res.stdout)
    if res.returncode != 0 or not m:
        raise ConfigError(f"无法运行 {tool}", f"cannot run {tool}")
    return int(m.group(1)), res.stdout.strip()


def libpq_env(url: str) -> tuple[str, dict[str, str]]:
    """A connection string without the password, and the environment carrying it (so the
    password never shows on a command line)."""
    params = psycopg2.extensions.parse_dsn(url)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = password
    return psycopg2.extensions.make_dsn(**params), env


# --- files -------------------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    """SHA-256 of a file."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def copy_hashed(src: Path, dst: Path) -> tuple[str, int]:
    """Copy a file, hashing what is read; returns (sha256, size)."""
    h = hashlib.sha256()
    size = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as fi, dst.open("wb") as fo:
        for chunk in iter(lambda: fi.read(1 << 20), b""):
            h.update(chunk)
            fo.write(chunk)
            size += len(chunk)
        fo.flush()
        os.fsync(fo.fileno())
    shutil.copystat(src, dst)
    return h.hexdigest(), size


def walk_set(root: Path) -> list[str]:
    """Relative paths (POSIX) of the regular files under ``root``, sorted; work in progress
    and symbolic links are left out."""
    if not root.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(_SKIP_DIR_PREFIXES))
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith(_SKIP_FILE_SUFFIXES) or path.is_symlink() or not path.is_file():
                continue
            found.append(path.relative_to(root).as_posix())
    return sorted(found)


# --- backup ------------------------------------------------------------------------------------

def software_version() -> str:
    """Installed version of the platform package."""
    try:
        return metadata.version("cim-onemap")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class _Snapshot:
    """What the snapshot transaction saw."""

    meta: dict[str, Any] = field(default_factory=dict[str, Any])
    tables: dict[str, dict[str, Any]] = field(default_factory=dict[str, Any])
    references: dict[str, set[str]] = field(default_factory=dict)  # set name → referenced paths


def _prepare_out(out: Path, roots: list[Path]) -> Path:
    out = out.expanduser().resolve()
    if out.suffix.lower() in (".tar", ".gz", ".tgz", ".zip"):
        raise InvalidInput(f"备份目标须为目录，而非归档文件：{out}",
                           f"the backup target must be a directory, not an archive file: {out}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInput(f"备份目录须为新目录或空目录：{out}", f"the backup directory must be new or empty: {out}")
    for root in roots:
        if out == root or out.is_relative_to(root):
            raise InvalidInput(f"备份目录不能位于被备份的文件夹 {root} 之内",
                               f"the backup directory must not lie inside the backed-up folder {root}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _read_snapshot(cur: psycopg2.extensions.cursor, settings: Settings, snap: _Snapshot) -> None:
    """Everything the manifest needs from the database, inside the snapshot transaction."""
    cur.execute("SELECT current_database(), current_setting('server_version'), "
                "current_setting('server_version_num')::int, now()")
    row = cur.fetchone()
    assert row is not None
    dbname, server_version, server_num, taken = row
    cur.execute("SELECT extname, extversion, extnamespace::regnamespace::text FROM pg_extension "
                "WHERE extname <> 'plpgsql' ORDER BY extname")
    extensions = [{"name": n, "version": v, "schema": s} for n, v, s in cur.fetchall()]
    postgis = None
    if any(e["name"] == "postgis" for e in extensions):
        cur.execute("SELECT postgis_lib_version()")
        row = cur.fetchone()
        assert row is not None
        postgis = row[0]
    cur.execute("SELECT to_regclass('cim_meta.schema_migration') IS NOT NULL")
    migrations = []
    row = cur.fetchone()
    if row is not None and row[0]:
        cur.execute("SELECT version, name, checksum FROM cim_meta.schema_migration ORDER BY version")
        migrations = [{"version": v, "name": n, "checksum": c.strip()} for v, n, c in cur.fetchall()]
    snap.meta = {"database": dbname, "postgres": server_version, "server_version_num": server_num,
                 "postgis": postgis, "extensions": extensions, "migrations": migrations,
                 "snapshot_at": taken.astimezone(dt.UTC).isoformat()}
    snap.tables = table_digests(cur, host_sets(settings))
    for fs in FILE_SETS:
        paths: set[str] = set()
        for ref in fs.references:
            table, _, column = ref.rpartition(".")
            if column in snap.tables.get(table, {}).get("columns", ()):
                cur.execute(f"SELECT DISTINCT {db.quote_ident(column)}::text FROM {qualified_table(table)} "
                            f"WHERE {db.quote_ident(column)} IS NOT NULL")
                paths |= {r[0] for r in cur.fetchall()}
        snap.references[fs.name] = paths


def _dump_with_snapshot(settings: Settings, url: str, out: Path, snap: _Snapshot,
                        progress: Callable[[str], None]) -> dict[str, Any]:
    """Export a snapshot, run pg_dump on it and read the manifest data in the same snapshot."""
    pg_dump = client_tool("pg_dump", settings.db)
    major, version_line = tool_version(pg_dump)
    conn = db.connect(url, application_name="cim-backup")
    try:
        conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot(), current_setting('server_version_num')::int")
            row = cur.fetchone()
            assert row is not None
            snapshot_id, server_num = row
            # the transaction waits for pg_dump once the checksums are done: not an idle session to end
            cur.execute("SELECT set_config('idle_in_transaction_session_timeout', '0', true)")
            if server_num // 10000 > major:
                raise ConfigError(
                    f"pg_dump {major} 不能备份 PostgreSQL {server_num // 10000} 服务器；请把 CIM_PG_BINDIR 指向同版本的程序",
                    f"pg_dump {major} cannot dump a PostgreSQL {server_num // 10000} server; "
                    "point CIM_PG_BINDIR at the binaries of that version")
            schemas = platform_schemas(cur)
            if "cim" not in schemas:
                raise InvalidInput("数据库中没有 cim 模式，无可备份内容（是否尚未运行 cim db up？）",
                                   "the database has no cim schema, nothing to back up (did `cim db up` run?)")
            dsn, env = libpq_env(url)
            cmd = [str(pg_dump), "--format=custom", f"--snapshot={snapshot_id}", f"--file={out / DUMP}",
                   "--no-password", *[f"--schema={s}" for s in schemas], f"--dbname={dsn}"]
            progress(f"pg_dump → {DUMP}")
            with tempfile.TemporaryFile() as err:
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
                try:
                    progress("统计行数与校验和 / counting rows and checksumming tables")
                    _read_snapshot(cur, settings, snap)
                except BaseException:
                    proc.kill()
                    proc.wait()
                    raise
                rc = proc.wait()
                err.seek(0)
                message = err.read().decode(errors="replace").strip()
            if rc != 0:
                raise BackupRejected(f"pg_dump 失败：{message[-800:]}", f"pg_dump failed: {message[-800:]}")
    finally:
        conn.close()
    return {"schemas": schemas, "pg_dump": version_line}


def _copy_sets(settings: Settings, staging: Path, snap: _Snapshot,
               progress: Callable[[str], None]) -> tuple[dict[str, Any], list[str]]:
    sets, warnings = {}, []
    for fs in FILE_SETS:
        root = set_root(fs, settings)
        files: dict[str, dict[str, Any]] = {}
        for rel in walk_set(root):
            sha, size = copy_hashed(root / rel, staging / FILES / fs.name / rel)
            files[rel] = {"sha256": sha, "size": size}
        missing, outside = [], []
        prefix = str(root) + "/"
        present = set(files) | {p.as_posix() for rel in files for p in PurePosixPath(rel).parents}
        for ref in sorted(snap.references.get(fs.name, ())):
            if not ref.startswith(prefix):
                outside.append(ref)
            elif ref[len(prefix):].rstrip("/") not in present:   # a file, or a folder of files
                missing.append(ref)
        for ref in missing:
            warnings.append(f"{fs.name}: 数据库引用的文件不存在 / file named by the database is missing: {ref}")
        for ref in outside:
            warnings.append(f"{fs.name}: 文件不在 {root} 下，未备份 / file outside {root}, not backed up: {ref}")
        sets[fs.name] = {"root": str(root), "references": list(fs.references), "files": files,
                         "missing": missing, "outside": outside}
        if files:
            progress(f"{fs.name}: {len(files)} 个文件 / files, {sum(f['size'] for f in files.values())} bytes")
    return sets, warnings


def backup(settings: Settings, out: Path, *, principal: auth.Principal | None = None,
           progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write a backup into the new or empty directory ``out``; returns the manifest.

    The backup is assembled in a hidden sibling directory and renamed to ``out`` when complete,
    so ``out`` never holds a partial backup. The action is recorded in ``cim.audit_log``.
    """
    progress = progress or (lambda _msg: None)
    principal = principal or auth.Principal(name=f"cli:{getpass.getuser()}", role=auth.Role.admin)
    out = _prepare_out(Path(out), [set_root(fs, settings) for fs in FILE_SETS])
    url = db.resolve_url(settings.db)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    staging.chmod(0o700)
    snap = _Snapshot()
    try:
        try:
            dumped = _dump_with_snapshot(settings, url, staging, snap, progress)
            sets, warnings = _copy_sets(settings, staging, snap, progress)
            manifest = {
                "format": FORMAT, "format_version": FORMAT_VERSION,
                "software": {"name": "cim-onemap", "version": software_version()},
                "created_at": dt.datetime.now(dt.UTC).isoformat(), "created_by": principal.name,
                "source": {"embedded": not settings.db.database_url, "home": str(settings.db.home_dir),
                           **{k: snap.meta[k] for k in ("database", "snapshot_at")}},
                "server": {k: snap.meta[k] for k in ("postgres", "server_version_num", "postgis")}
                | {"pg_dump": dumped["pg_dump"]},
                "extensions": snap.meta["extensions"], "schemas": dumped["schemas"],
                "migrations": snap.meta["migrations"],
                "checksum_method": CHECKSUM_METHOD, "text_output": TEXT_OUTPUT,
                "tables": snap.tables,
                "database": {"file": DUMP, "format": "custom", "sha256": sha256_file(staging / DUMP),
                             "size": (staging / DUMP).stat().st_size},
                "file_sets": sets, "warnings": warnings,
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
            if out.exists():
                out.rmdir()
            os.replace(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except psycopg2.Error as exc:
        _audit(url, principal, "backup", str(out), ok=False, detail={"error": str(exc)})
        raise BackupRejected(f"备份时数据库出错：{exc}", f"database error during the backup: {exc}") from exc
    except CimError as exc:
        _audit(url, principal, "backup", str(out), ok=False, detail={"error": exc.en})
        raise
    _audit(url, principal, "backup", str(out), ok=True, detail={
        "tables": len(manifest["tables"]), "rows": sum(t["rows"] for t in manifest["tables"].values()),
        "files": {k: len(v["files"]) for k, v in manifest["file_sets"].items()},
        "dump_bytes": manifest["database"]["size"], "snapshot_at": manifest["source"]["snapshot_at"]})
    return manifest


def _audit(url: str, principal: auth.Principal, action: str, target: str, *, ok: bool, detail: dict[str, Any]) -> None:
    """Record a backup or restore in ``cim.audit_log`` (a database that cannot take the row is
    reported in the log, the command's outcome stands)."""
    try:
        conn = db.connect(url, application_name=f"cim-{action}")
    except CimError:
        log.warning("could not record %s in the audit log: database unavailable", action)
        return
    try:
        with db.transaction(conn) as cur:
            auth.audit(cur, principal, action, target=target, ok=ok, detail=detail)
    except psycopg2.Error as exc:
        log.warning("could not record %s in the audit log: %s", action, exc)
    finally:
        conn.close()


def applied_migrations_known(manifest: dict[str, Any]) -> None:
    """Refuse a backup whose applied migrations this software does not have (a newer version
    made it) or whose migration files differ from ours."""
    ours = {m.version: m for m in migrate.discover()}
    for m in manifest.get("migrations", []):
        mine = ours.get(m["version"])
        if mine is None:
            raise InvalidInput(
                f"备份来自更新的软件版本（迁移 {m['version']:04d}_{m['name']} 未知），请先升级本软件",
                f"the backup comes from a newer version (migration {m['version']:04d}_{m['name']} is unknown); "
                "upgrade this software first")
        if mine.checksum != m["checksum"]:
            raise InvalidInput(f"备份中的迁移 {mine.path.name} 与本软件的文件不同",
                               f"migration {mine.path.name} in the backup differs from this software's file")
