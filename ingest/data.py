"""The ingest's data files and their reader.

Facts the ingest works with are data, not code, and live beside the package: delivery profiles
(``profiles/*.yaml``), shared code lists (``codelists.yaml``), county longitudes
(``county_lon.yaml``), datum-shift parameters (``datum_shifts.yaml``), the validation rules
(``rules.yaml``) and the report template (``templates/``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

DATA_DIR = Path(__file__).resolve().parent


def read_yaml(path: Path):
    """Parse a YAML data file with the libyaml loader when available (safe subset)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
