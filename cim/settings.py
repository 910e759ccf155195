"""Settings, one class per concern, all read from ``CIM_*`` environment variables.

Library code takes a settings object as a parameter; only the CLIs and the API's
``create_app`` construct them (through :func:`load`), so tests can build settings directly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    """Where the database is: ``CIM_DATABASE_URL``, or the embedded cluster under ``CIM_HOME``."""

    model_config = SettingsConfigDict(env_prefix="CIM_", extra="ignore")

    database_url: str | None = None
    home: Path = Path(".cim")
    statement_timeout_ms: int = Field(15000, ge=100)
    pool_min: int = Field(1, ge=0)
    pool_max: int = Field(8, ge=1)
    pg_bindir: Path | None = None
    db_os_user: str | None = None
    db_listen: str = Field("127.0.0.1", description="addresses the embedded cluster listens on besides 127.0.0.1 "
                                                  "(comma-separated; set explicitly to let lower-tier subscribers in)")

    @model_validator(mode="after")
    def _pool_bounds(self) -> DatabaseSettings:
        if self.pool_min > self.pool_max:
            raise ValueError("CIM_POOL_MIN must not exceed CIM_POOL_MAX")
        return self

    @property
    def home_dir(self) -> Path:
        """Absolute ``CIM_HOME``."""
        return self.home.expanduser().resolve()


class AuthSettings(BaseSettings):
    """Access control: anonymous reads are off unless ``CIM_PUBLIC_READ=true``."""

    model_config = SettingsConfigDict(env_prefix="CIM_", extra="ignore")

    public_read: bool = False


class ApiSettings(BaseSettings):
    """HTTP server."""

    model_config = SettingsConfigDict(env_prefix="CIM_API_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    cors_origins: list[str] = ["*"]
    web_root: Path | None = None
    task_threads: int = Field(2, ge=0, description="background-task worker threads per process (0: run none)")
    task_stale_s: float = Field(60.0, ge=1.0, description="a running task without a heartbeat for this long lost "
                                                         "its process: queued again or failed (same on every host)")


class IngestSettings(BaseSettings):
    """Ingest: upload limits and where originals are archived."""

    model_config = SettingsConfigDict(env_prefix="CIM_INGEST_", extra="ignore")

    max_upload_mb: int = 512
    max_unzipped_mb: int = 4096
    max_zip_ratio: float = 200.0
    archive_dir: Path | None = None  # default: $CIM_HOME/archive
    datum_shifts: Path | None = None  # Xian 1980 / Beijing 1954 → CGCS2000; default ingest/datum_shifts.yaml
    chunk_rows: int = Field(25_000, ge=1, description="a shapefile of more records than this is read, mapped, "
                                                       "checked and written in chunks of this many rows")
    stream_rows: int = Field(10_000, ge=0, description="a checked batch of at least this many rows is kept only "
                                                         "as the residue the rules across layers read (0: every batch)")
    malloc_arenas: int = Field(2, ge=0, description="glibc malloc arenas of an ingest process (0: glibc's "
                                                      "default of eight per core)")
    mmap_threshold_kb: int = Field(1024, ge=0, description="allocations of this many KiB or more are mapped and "
                                                           "returned on free (0: glibc's sliding threshold)")
    arrow_system_pool: bool = Field(True, description="Arrow allocates with the C library's malloc, which "
                                    "returns large freed buffers to the system (false: Arrow's own pool, which "
                                    "keeps them for reuse)")


class TileSettings(BaseSettings):
    """Vector tiles and 3D Tiles."""

    model_config = SettingsConfigDict(env_prefix="CIM_TILES_", extra="ignore")

    extent: int = 4096
    buffer: int = 64
    max_features: int = 20000
    max_tile_kb: int = Field(500, ge=16)  # a larger tile is re-rendered with smaller feature caps
    cache_mb: int = 256
    cache_max_age_s: int = 60
    pmtiles: Path | None = None
    threed_dir: Path | None = None  # default: $CIM_HOME/3dtiles


class TierSettings(BaseSettings):
    """Linked tiers: heartbeat schedule and the thresholds of the lower-tier running status.

    A lower-tier instance is green while its latest heartbeat is younger than ``amber_after_s``
    and arrived within ``lag_amber_s``; amber up to ``red_after_s`` / ``lag_red_s`` (or when its
    dictionaries or schema differ from this instance's); red beyond, or without any heartbeat.
    """

    model_config = SettingsConfigDict(env_prefix="CIM_TIER_", extra="ignore")

    heartbeat_s: float = Field(30.0, gt=0, description="seconds between heartbeats of this instance")
    amber_after_s: float = Field(90.0, gt=0)
    red_after_s: float = Field(300.0, gt=0)
    lag_amber_s: float = Field(60.0, gt=0)
    lag_red_s: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> TierSettings:
        if self.amber_after_s > self.red_after_s or self.lag_amber_s > self.lag_red_s:
            raise ValueError("CIM_TIER_*_AMBER_* thresholds must not exceed the red ones")
        return self


class HazardSettings(BaseSettings):
    """Hazard ledger: attachments, scans, listing."""

    model_config = SettingsConfigDict(env_prefix="CIM_HAZARDS_", extra="ignore")

    attachments_dir: Path | None = None  # default: $CIM_HOME/hazards/attachments
    attachment_max_mb: float = Field(20.0, gt=0, description="largest photo or report accepted")
    timezone: str = "Asia/Shanghai"      # the ledger's dates (deadlines, 逾期, number years)
    scan_timeout_s: int = Field(900, ge=10, description="statement timeout of one scan statement")
    scan_workers: int = Field(2, ge=1, le=16, description="database connections one scan spreads its rules over")
    page_max: int = Field(1000, ge=1)


class Settings(BaseSettings):
    """All concerns together, for the composition roots (CLI, API)."""

    model_config = SettingsConfigDict(extra="ignore")

    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    tiles: TileSettings = Field(default_factory=TileSettings)
    tier: TierSettings = Field(default_factory=TierSettings)
    hazards: HazardSettings = Field(default_factory=HazardSettings)

    @property
    def archive_dir(self) -> Path:
        """Where delivery originals are archived: ``CIM_INGEST_ARCHIVE_DIR`` or ``$CIM_HOME/archive``."""
        return (self.ingest.archive_dir or self.db.home_dir / "archive").expanduser().resolve()


def load() -> Settings:
    """Read every settings group from the environment (composition roots only)."""
    return Settings()
