"""``cim restore``: a backup written by ``cim backup`` back into a database and ``$CIM_HOME``.

Order of work, so that a failure leaves nothing half-done that a rerun cannot fix:

1. read the manifest; refuse a backup from a newer software version (unknown migrations);
2. copy every file of the backup into hidden staging folders beside their destinations,
   checking each sha256 and size against the manifest (a damaged or altered backup is refused
   here, before the database is touched);
3. check the target: the embedded cluster is created and started when ``CIM_DATABASE_URL`` is
   unset; a target holding any platform table is refused unless ``force``; the extensions the
   dump needs must be available;
4. one transaction through psql: (with ``force``: drop the platform schemas), create missing
   extensions, then pg_restore's pre-data and data sections, the rewrite of file paths from the
   source's folders to this host's, and the post-data section (indexes, triggers). The rewrite
   runs before the triggers exist, so it changes no data version. Any error rolls everything
   back, including the drop;
5. drop the markers of 3D Tiles builds in ``$CIM_HOME`` (their data versions could equal the
   restored ones while they show other data) and move the staged files into place;
6. recount and re-checksum every table and compare with the manifest (a mismatch exits 1 and
   says that ``--force`` redoes the restore);
7. audit, ANALYZE, apply newer migrations (none for a same-version backup).
"""

from __future__ import annotations

import getpass
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from cim import auth, db, migrate
from cim.backup import (
    DUMP,
    FILES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    _audit,
    applied_migrations_known,
    client_tool,
    compare_tables,
    copy_hashed,
    file_set,
    libpq_env,
    path_columns,
    platform_schemas,
    platform_tables,
    qualified_table,
    set_root,
    sha256_file,
    table_digests,
    tool_version,
)
from cim.embedded import EmbeddedCluster
from cim.errors import BackupRejected, ConfigError, InvalidInput
from cim.settings import Settings

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_MAX_LISTED = 12


# --- the backup --------------------------------------------------------------------------------

def read_manifest(src: Path) -> dict:
    """The manifest of a backup directory, checked for shape; InvalidInput when unusable."""
    path = Path(src) / MANIFEST
    if not Path(src).is_dir():
        raise InvalidInput(f"备份目录不存在：{src}", f"no such backup directory: {src}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidInput(f"{src} 不是备份目录（缺少 {MANIFEST}）", f"{src} is not a backup ({MANIFEST} missing)") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{MANIFEST} 无法解析", f"{MANIFEST} is not valid JSON") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput(f"{src} 不是 cim 备份", f"{src} is not a cim backup")
    if not isinstance(manifest.get("format_version"), int) or manifest["format_version"] > FORMAT_VERSION:
        raise InvalidInput("备份格式版本过新，请升级本软件",
                           "the backup format is newer than this software; upgrade it first")
    try:
        for name, info in manifest["file_sets"].items():
            if not _NAME.match(name) or not isinstance(info["files"], dict):
                raise ValueError(name)
        for table, info in manifest["tables"].items():
            if not isinstance(info["rows"], int) or not isinstance(info["columns"], list):
                raise ValueError(table)
        if not _SHA.match(manifest["database"]["sha256"]):
            raise ValueError("database")
        for ext in manifest["extensions"]:
            if not _NAME.match(ext["name"]):
                raise ValueError(ext["name"])
        absent = [k for k in ("schemas", "migrations", "source", "created_at") if k not in manifest]
        if absent or not isinstance(manifest["server"]["pg_dump"], str):
            raise ValueError(", ".join(absent) or "server")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"{MANIFEST} 内容不完整或格式错误（{exc}）",
                           f"{MANIFEST} is incomplete or malformed ({exc})") from exc
    return manifest


def _safe_rel(rel: str) -> PurePosixPath:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts or "\\" in rel or "\x00" in rel:
        raise ValueError(rel)
    return p


def verify_files(src: Path, manifest: dict, staging: dict[str, Path] | None = None,
                 progress: Callable[[str], None] | None = None) -> int:
    """Check the dump and every file of the backup against the manifest (sha256 and size);
    with ``staging`` (set name → folder), copy each file there while checking it.

    Raises :class:`BackupRejected` listing what is missing or altered; returns the number of
    bytes checked.
    """
    progress = progress or (lambda _msg: None)
    problems: list[str] = []
    checked = 0
    dump = Path(src) / DUMP
    if not dump.is_file():
        problems.append(f"{DUMP}: missing / 缺失")
    else:
        checked += dump.stat().st_size
        if dump.stat().st_size != manifest["database"]["size"] or sha256_file(dump) != manifest["database"]["sha256"]:
            problems.append(f"{DUMP}: sha256 differs from the manifest / 与清单不符")
    for name, info in manifest["file_sets"].items():
        for rel, meta in info["files"].items():
            label = f"{FILES}/{name}/{rel}"
            try:
                relpath = _safe_rel(rel)
            except ValueError:
                problems.append(f"{label}: unsafe path / 路径不安全")
                continue
            path = Path(src) / FILES / name / relpath
            if not path.is_file():
                problems.append(f"{label}: missing / 缺失")
                continue
            if staging is not None:
                sha, size = copy_hashed(path, staging[name] / relpath)
            else:
                sha, size = sha256_file(path), path.stat().st_size
            checked += size
            if sha != meta.get("sha256") or size != meta.get("size"):
                problems.append(f"{label}: sha256 differs from the manifest / 与清单不符")
        if info["files"]:
            progress(f"{name}: {len(info['files'])} 个文件已检查 / files checked")
    if problems:
        shown = "; ".join(problems[:_MAX_LISTED]) + (f"; … (+{len(problems) - _MAX_LISTED})"
                                                     if len(problems) > _MAX_LISTED else "")
        raise BackupRejected(f"备份已损坏或被改动，拒绝恢复：{shown}",
                             f"the backup is damaged or was altered; refusing to restore: {shown}", problems=problems)
    return checked


# --- the target --------------------------------------------------------------------------------

def _target_url(settings: Settings, progress: Callable[[str], None]) -> str:
    """``CIM_DATABASE_URL``, or the embedded cluster, created and started when needed."""
    if settings.db.database_url:
        return settings.db.database_url
    cluster = EmbeddedCluster(settings.db.home_dir, settings.db.pg_bindir, settings.db.db_os_user)
    if not cluster.exists():
        progress(f"创建本地数据库 / creating the local cluster in {cluster.root}")
    info = cluster.start()
    return info.url


def target_contents(cur: psycopg2.extensions.cursor) -> dict[str, bool]:
    """Platform tables of the target and whether each holds rows."""
    out = {}
    for table in platform_tables(cur):
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {qualified_table(table)})")
        out[table] = cur.fetchone()[0]
    return out


def _check_extensions(cur: psycopg2.extensions.cursor, manifest: dict) -> None:
    cur.execute("SELECT name FROM pg_available_extensions")
    available = {r[0] for r in cur.fetchall()}
    missing = [e["name"] for e in manifest["extensions"] if e["name"] not in available]
    if missing:
        names = ", ".join(missing)
        raise ConfigError(f"目标服务器缺少扩展 {names}（PostGIS 请安装 postgresql-15-postgis-3，或请服务商开通）",
                          f"the target server lacks the extension(s) {names} (install postgresql-15-postgis-3 for "
                          "PostGIS, or ask the provider to enable them)")


# --- the database transaction ------------------------------------------------------------------

@dataclass
class _Script:
    """The SQL around pg_restore's sections in the restore transaction."""

    preamble: list[str] = field(default_factory=list)      # before pre-data
    after_schema: list[str] = field(default_factory=list)  # after pre-data (schemas and tables exist)
    after_data: list[str] = field(default_factory=list)    # after data, before indexes and triggers
    # backup's schema → {member of a relocated extension → the target's schema of it}
    relocated: dict[str, dict[str, str]] = field(default_factory=dict)

    def ddl_filter(self) -> Callable[[bytes], bytes] | None:
        """Rewrites ``<schema>.<member>`` and ``OPERATOR(<schema>.<op>)`` of relocated
        extensions in DDL lines (never in data)."""
        if not self.relocated:
            return None
        schemas = b"|".join(re.escape(k.encode()) for k in self.relocated)
        names = re.compile(rb"(?<![\w\"$.])(" + schemas + rb")\.([A-Za-z_][\w$]*|\"[^\"]+\")")
        operators = re.compile(rb"OPERATOR\((" + schemas + rb")\.([^)\s]+)\)")

        def swap(m: re.Match) -> bytes:
            target = self.relocated[m.group(1).decode()].get(m.group(2).decode().strip('"'))
            if target is None:
                return m.group(0)
            return m.group(0).replace(m.group(1) + b".", target.encode() + b".", 1)

        return lambda line: operators.sub(swap, names.sub(swap, line))


def _plan_script(cur, conn, manifest: dict, drop: list[str], force: bool) -> _Script:
    """Drops, extensions (created where the backup had them, or used where the target has
    them), in the right places of the transaction."""
    script = _Script(preamble=["SET client_min_messages = warning;", "SET lock_timeout = '60s';", "BEGIN;"])
    for schema in drop:
        script.preamble.append(sql.SQL("DROP SCHEMA IF EXISTS {} {};").format(
            sql.Identifier(schema), sql.SQL("CASCADE" if force else "RESTRICT")).as_string(conn))
    cur.execute("SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace")
    installed = dict(cur.fetchall())
    for ext in manifest["extensions"]:
        name, schema = ext["name"], ext.get("schema") or "public"
        have = installed.get(name)
        if have is not None and have not in drop:
            if have != schema:
                # The target has it elsewhere (e.g. pg_trgm in public on a managed server, in cim
                # in the embedded cluster): point the dump's qualified references there.
                cur.execute(_MEMBERS_SQL, (name,))
                script.relocated.setdefault(schema, {}).update((r[0], have) for r in cur.fetchall())
            continue
        create = sql.SQL("CREATE EXTENSION IF NOT EXISTS {} SCHEMA {} CASCADE;").format(
            sql.Identifier(name), sql.Identifier(schema)).as_string(conn)
        if schema in manifest["schemas"]:
            script.after_schema.append(create)
        else:
            script.preamble.append(sql.SQL("CREATE SCHEMA IF NOT EXISTS {};").format(
                sql.Identifier(schema)).as_string(conn))
            script.preamble.append(create)
    script.preamble.append("SET lock_timeout = 0;")
    return script


# Names of an extension's member objects (functions, types, operator classes and families,
# operators) that a dump may reference schema-qualified.
_MEMBERS_SQL = """
    SELECT coalesce(p.proname, t.typname, oc.opcname, of.opfname, o.oprname)::text
    FROM pg_depend d
    JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid AND d.deptype = 'e'
    LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
    LEFT JOIN pg_type t ON d.classid = 'pg_type'::regclass AND t.oid = d.objid
    LEFT JOIN pg_opclass oc ON d.classid = 'pg_opclass'::regclass AND oc.oid = d.objid
    LEFT JOIN pg_opfamily of ON d.classid = 'pg_opfamily'::regclass AND of.oid = d.objid
    LEFT JOIN pg_operator o ON d.classid = 'pg_operator'::regclass AND o.oid = d.objid
    WHERE e.extname = %s"""


def _rewrites(conn, manifest: dict, roots: dict[str, Path]) -> tuple[list[str], dict]:
    """UPDATE statements moving the file paths of the backup's folders to this host's (the
    columns the manifest names for each set: the ones its checksums treat as paths)."""
    tables = {t: info["columns"] for t, info in manifest["tables"].items()}
    sets = {name: (info["root"], info.get("references", [])) for name, info in manifest["file_sets"].items()}
    statements, moved = [], {}
    for table, columns in path_columns(tables, sets).items():
        schema, _, name = table.partition(".")
        for column, (set_name, old_root) in columns.items():
            new_root = str(roots[set_name]).rstrip("/") + "/"
            if new_root == old_root:
                continue
            col = sql.Identifier(column)
            statements.append(sql.SQL(
                "UPDATE {}.{} SET {} = {} || substr({}, length({}) + 1) WHERE starts_with({}, {});").format(
                sql.Identifier(schema), sql.Identifier(name), col, sql.Literal(new_root), col,
                sql.Literal(old_root), col, sql.Literal(old_root)).as_string(conn))
            moved[f"{table}.{column}"] = {"from": old_root, "to": new_root}
    return statements, moved


def _copy_stream(src, dst, line_filter: Callable[[bytes], bytes] | None) -> None:
    if line_filter is None:
        shutil.copyfileobj(src, dst, 1 << 20)
        return
    for line in src:
        dst.write(line_filter(line))


def _run_restore_script(settings: Settings, url: str, dump: Path, script: _Script) -> None:
    """Feed psql one transaction: preamble, pre-data, extensions living in the platform schemas,
    data, path rewrites, post-data, COMMIT. Nothing is committed unless every part succeeded."""
    pg_restore = client_tool("pg_restore", settings.db)
    psql = client_tool("psql", settings.db)
    dsn, env = libpq_env(url)
    restore_args = [str(pg_restore), "--no-owner", "--no-privileges", "--no-publications", "--no-subscriptions",
                    "--no-security-labels", "--no-tablespaces", "--file=-"]
    ddl = script.ddl_filter()
    parts = (("pre-data", ddl, script.after_schema), ("data", None, script.after_data),
             ("post-data", ddl, ["COMMIT;"]))
    with tempfile.TemporaryFile() as psql_err, tempfile.TemporaryFile() as restore_err:
        proc = subprocess.Popen([str(psql), "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", "-"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_err, env=env)
        failed_section = None
        try:
            proc.stdin.write(("\n".join(script.preamble) + "\n").encode())
            for section, line_filter, after in parts:
                part = subprocess.Popen([*restore_args, f"--section={section}", str(dump)],
                                        stdout=subprocess.PIPE, stderr=restore_err)
                try:
                    _copy_stream(part.stdout, proc.stdin, line_filter)
                finally:
                    part.stdout.close()
                    if part.poll() is None:
                        part.kill()
                    rc = part.wait()
                if rc != 0:
                    failed_section = section
                    break
                proc.stdin.write(("\n".join(after) + "\n").encode())
        except BrokenPipeError:
            pass  # psql stopped at an error; its message is read below
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        rc = proc.wait()
        psql_err.seek(0)
        restore_err.seek(0)
        psql_msg = psql_err.read().decode(errors="replace").strip()
        restore_msg = restore_err.read().decode(errors="replace").strip()
    if failed_section or rc != 0:
        detail = ((restore_msg if failed_section else psql_msg) or f"exit code {rc}")[-800:]
        raise BackupRejected(
            f"恢复失败，数据库未改动（恢复在一个事务中进行）：{detail}",
            f"the restore failed and the database was left unchanged (it runs in one transaction): {detail}")


# --- files -------------------------------------------------------------------------------------

def _place_files(staging: dict[str, Path], roots: dict[str, Path]) -> dict[str, int]:
    """Move staged files to their destinations (same file system: a rename each)."""
    placed = {}
    for name, stage in staging.items():
        count = 0
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            rel = path.relative_to(stage)
            dest = roots[name] / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            path.replace(dest)
            count += 1
        placed[name] = count
    return placed


def _forget_3d_builds(settings: Settings) -> list[str]:
    """Remove the ``build.json`` markers of 3D Tiles builds: their data versions may coincide
    with the restored ones while they show other data (the service then renders on demand)."""
    folder = Path(settings.tiles.threed_dir or settings.db.home_dir / "3dtiles")
    removed = []
    for marker in sorted(folder.glob("*/build.json")):
        marker.unlink(missing_ok=True)
        removed.append(marker.parent.name)
    return removed


# --- restore -----------------------------------------------------------------------------------

def check(src: Path, progress: Callable[[str], None] | None = None) -> dict:
    """Verify a backup without restoring it: manifest shape and every file's sha256."""
    manifest = read_manifest(Path(src))
    checked = verify_files(Path(src), manifest, None, progress)
    return {"manifest": manifest, "bytes_checked": checked}


def restore(settings: Settings, src: Path, *, force: bool = False, run_migrations: bool = True,
            principal: auth.Principal | None = None, progress: Callable[[str], None] | None = None,
            warn: Callable[[str], None] | None = None) -> dict:
    """Restore the backup directory ``src`` into the configured database and ``$CIM_HOME``.

    Raises :class:`InvalidInput` / :class:`ConfigError` / ``DatabaseUnavailable`` (unusable
    backup or environment) and :class:`BackupRejected` (damaged backup, non-empty target
    without ``force``, failed restore, restored database differing from the manifest).
    """
    progress = progress or (lambda _msg: None)
    principal = principal or auth.Principal(name=f"cli:{getpass.getuser()}", role=auth.Role.admin)
    try:
        return _restore(settings, Path(src).expanduser().resolve(), force=force, run_migrations=run_migrations,
                        principal=principal, progress=progress, warn=warn or progress)
    except psycopg2.Error as exc:
        raise BackupRejected(f"恢复时数据库出错：{exc}", f"database error during the restore: {exc}") from exc


def _restore(settings: Settings, src: Path, *, force: bool, run_migrations: bool, principal: auth.Principal,
             progress: Callable[[str], None], warn: Callable[[str], None]) -> dict:
    manifest = read_manifest(src)
    applied_migrations_known(manifest)
    pg_restore_major, _ = tool_version(client_tool("pg_restore", settings.db))
    m = re.search(r"(\d+)(?:\.\d+)?", manifest["server"]["pg_dump"])
    if m and int(m.group(1)) > pg_restore_major:
        raise ConfigError(f"备份由 pg_dump {m.group(1)} 生成，pg_restore {pg_restore_major} 无法读取；请设置 CIM_PG_BINDIR",
                          f"the dump was written by pg_dump {m.group(1)}, which pg_restore {pg_restore_major} "
                          "cannot read; set CIM_PG_BINDIR")

    roots = {name: set_root(file_set(name), settings) for name in manifest["file_sets"]}
    staging: dict[str, Path] = {}
    try:
        for name, root in roots.items():
            if manifest["file_sets"][name]["files"]:
                root.mkdir(parents=True, exist_ok=True)
                staging[name] = Path(tempfile.mkdtemp(prefix=".restore-", dir=root))
        progress("校验并暂存备份文件 / verifying and staging the backup's files")
        verify_files(src, manifest, staging, progress)

        url = _target_url(settings, progress)
        conn = db.connect(url, application_name="cim-restore")
        try:
            with conn.cursor() as cur:
                _check_extensions(cur, manifest)
                contents = target_contents(cur)
                present = set(platform_schemas(cur))
                cur.execute("SELECT coalesce(application_name, ''), count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1 ORDER BY 1")
                others = cur.fetchall()
                script = _plan_script(cur, conn, manifest, sorted(present), force)
            script.after_data, moved = _rewrites(conn, manifest, roots)
            conn.rollback()
            if contents and not force:
                with_rows = sum(contents.values())
                raise BackupRejected(
                    f"目标数据库不是空的（{len(contents)} 张平台表，其中 {with_rows} 张有数据）；"
                    "如确需覆盖，请加 --force（将删除并重建 cim 模式）",
                    f"the target database is not empty ({len(contents)} platform tables, {with_rows} holding rows); "
                    "add --force to replace it (drops and recreates the cim schemas)")
            if contents:
                warn(f"警告 / WARNING: --force 将删除并重建模式 / drops and recreates the schemas "
                     f"{', '.join(sorted(present))}: {len(contents)} 张表 / tables, "
                     f"{sum(contents.values())} 张有数据 / holding rows")
            if others:
                warn("警告 / WARNING: 其他会话正在使用该数据库，请先停止 cim serve / other sessions use this database; "
                     "stop `cim serve` first: " + ", ".join(f"{a or '?'}×{n}" for a, n in others))
        finally:
            conn.close()

        progress("pg_restore → 数据库（单一事务）/ database (one transaction)")
        _run_restore_script(settings, url, src / DUMP, script)
        stale = _forget_3d_builds(settings)
        try:
            placed = _place_files(staging, roots)
        except OSError as exc:
            raise BackupRejected(f"数据库已恢复，但文件未能放到位（{exc}）；请用 --force 重新恢复",
                                 f"the database was restored but the files could not be put in place ({exc}); "
                                 "rerun the restore with --force") from exc
    finally:
        for stage in staging.values():
            shutil.rmtree(stage, ignore_errors=True)

    progress("重新统计并校验各表 / recounting and checksumming every table")
    target_sets = {name: (str(roots[name]), info.get("references", [])) for name, info in manifest["file_sets"].items()}
    conn = db.connect(url, application_name="cim-restore")
    try:
        conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with conn.cursor() as cur:
            actual = table_digests(cur, target_sets)
        conn.rollback()
    finally:
        conn.close()
    problems = compare_tables(manifest["tables"], actual)
    if problems:
        _audit(url, principal, "restore", str(src), ok=False, detail={"problems": problems[:50]})
        shown = "; ".join(problems[:_MAX_LISTED])
        raise BackupRejected(
            f"恢复后的数据库与备份清单不一致：{shown}。数据库现为恢复后的状态；排除原因后请运行 cim restore {src} --force 重新恢复",
            f"the restored database differs from the backup manifest: {shown}. The database now holds the restored "
            f"state; after fixing the cause, rerun `cim restore {src} --force`", problems=problems)

    result = {"source": manifest["source"], "created_at": manifest["created_at"],
              "tables": len(actual), "rows": sum(t["rows"] for t in actual.values()),
              "files": placed, "paths_rewritten": moved, "forced": bool(contents), "stale_3d_builds_removed": stale}
    _audit(url, principal, "restore", str(src), ok=True, detail=result)

    conn = db.connect(url, autocommit=True, application_name="cim-restore")
    try:
        with conn.cursor() as cur:
            cur.execute("ANALYZE")
        if run_migrations:
            progress("应用迁移 / applying migrations")
            result["migrations_applied"] = [m.path.name for m in migrate.migrate(conn)]
    except psycopg2.Error as exc:
        raise BackupRejected(f"恢复完成，但迁移失败：{exc}", f"restored, but migrating failed: {exc}") from exc
    finally:
        conn.close()
    return result
