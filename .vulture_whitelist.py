"""Names vulture reports as unused that are used where it cannot see (`make check`).

Each entry says who uses the name. Add an entry only for such a use; code that nothing uses is
deleted instead (docs/contributing.md, "Static checks").
"""
# ruff: noqa: B018, F821

# Entry points named by strings.
factory  # api/app.py: `uvicorn --factory api.app:factory` (api/cli.py, bench/)

# Public hooks for the routers of the CIM+ applications (docs/architecture.md, api/tasks.py).
follow_county_changes  # api.tasks: a router asks for a task per county change

# Read by libraries, not by our code.
_encodeFilenameFlags  # demo/writers.py: zipfile calls this hook when writing a member header
compress_type  # demo/writers.py: ZipInfo attribute zipfile reads
should_exit  # uvicorn.Server attribute; setting it stops the test and bench servers
log_message  # http.server.BaseHTTPRequestHandler hook, overridden to keep test output quiet
create_system  # zipfile.ZipInfo attribute (tests/ingest/fixtures.py: a symlink member)
number_format  # openpyxl cell attribute openpyxl writes out (cimplus/healthcheck/report.py)
freeze_panes  # openpyxl worksheet attribute (cimplus/healthcheck/report.py, cimplus/hazards/export.py)
alignment  # openpyxl cell attribute (cimplus/healthcheck/report.py, cimplus/hazards/export.py)

# Fields filled from YAML or serialised as a whole.
floors_attr  # layers/spec.py: layer spec field, set in layers/catalog/buildings.yaml
dimension  # cimplus/healthcheck/catalog.py Indicator: set in indicators.yaml, read by the 0081 view and the API
description_zh  # demo/defects.py: Defect fields, written out by dataclasses.asdict
description_en
ROAD_CLASS_CODE  # demo/town.py: road class → code table of the demo town's road layer

# Enum members chosen on the command line (typer builds the choices from the enum).
pipelines  # tiles/threed/cli.py Layer
b3dm  # tiles/threed/cli.py Fmt

# Arguments that are part of a cache key or a fixture request.
mtime_ns  # ingest/profile.py: lru_cache key, so an edited profile file is read again
unchanged  # tests/ingest/test_api_ingest_defences.py: fixture asking that the database stays unchanged
inputs_loaded  # tests/cimplus/healthcheck/conftest.py: fixture asking that the inputs are loaded before run_2024
WEB_COUNTY  # tests/web/conftest.py: county code of the web tests' data, imported by the web tests
