"""Engineering tables of the national standards, as data shared by every package.

``clearances.yaml`` (GB 50028 / GB 50289 clear distances, cover depths, what a parallel run
is) and ``aging.yaml`` (国办发〔2022〕22号 renewal criteria) are read by ingest validation, the
hazard rules and the health-check indicators alike, so a corrected value is corrected
everywhere. Each table cites its clause and the confidence tag of the domain digest.
``CIM_STANDARDS_DIR`` points at a directory holding a bureau's own copies of these files.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from cim.errors import ConfigError

HERE = Path(__file__).resolve().parent
ENV_VAR = "CIM_STANDARDS_DIR"
_REQUIRED = {"clearances": ("pressure_classes", "gas_building", "gas_horizontal", "parallel_run", "vertical", "cover"),
             "aging": ("networks",)}


def _path(name: str) -> Path:
    override = os.environ.get(ENV_VAR)
    if override and (Path(override) / f"{name}.yaml").is_file():
        return Path(override) / f"{name}.yaml"
    return HERE / f"{name}.yaml"


@lru_cache(maxsize=8)
def _load(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"标准数据文件 {p.name} 无法读取：{exc}", f"standards file {p} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"标准数据文件 {p.name} 格式错误", f"standards file {p} is not a mapping")
    missing = [k for k in _REQUIRED.get(p.stem, ()) if k not in data]
    if missing:
        raise ConfigError(f"标准数据文件 {p.name} 缺少 {missing}", f"standards file {p} lacks {missing}")
    return data


def table(name: str) -> dict[str, Any]:
    """A standards file by name (``clearances`` or ``aging``) as a dict."""
    if name not in _REQUIRED:
        raise ConfigError(f"没有标准数据 {name}", f"no standards table {name}")
    return _load(str(_path(name)))


def clearances() -> dict[str, Any]:
    """GB 50028 / GB 50289 clear distances and cover depths (``clearances.yaml``)."""
    return table("clearances")


def aging() -> dict[str, Any]:
    """国办发〔2022〕22号 renewal criteria per network (``aging.yaml``)."""
    return table("aging")


def without_meta(row: dict[str, Any]) -> dict[str, Any]:
    """A table row without its ``clause`` / ``tag`` citation keys."""
    return {k: v for k, v in row.items() if k not in ("clause", "tag")}
