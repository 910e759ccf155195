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

# Columns of the hazard ledger's ORM models (cimplus/hazards/model.py, tables of migration 0070).
# query.entry and export.rows read every Hazard column through Hazard.__table__.columns; the
# workflow sets the ones it changes; the scans write them in SQL.
Hazard.rule_key  # query.entry / export.rows (Hazard.__table__.columns); scan.py matches findings on it in SQL
Hazard.facility_keys  # query.entry / export.rows; scan.py and workflow.py fill it in SQL
Hazard.province_code  # query.entry / export.rows; workflow.register sets it
Hazard.city_code  # query.entry / export.rows; workflow.register sets it
Hazard.found_at  # query.entry / export.rows (发现时间 column)
Hazard.found_by  # query.entry / export.rows (发现人 column); workflow.register sets it
Hazard.responsible_unit  # query.entry / export.rows; workflow fields from ledger.yaml (getattr/setattr)
Hazard.responsible_person  # query.entry / export.rows; workflow fields from ledger.yaml
Hazard.contact  # query.entry / export.rows; workflow fields from ledger.yaml
Hazard.measures  # query.entry / export.rows; workflow fields from ledger.yaml
Hazard.interim_controls  # query.entry / export.rows; workflow fields from ledger.yaml
Hazard.reviewer  # query.entry / export.rows; workflow fields from ledger.yaml
Hazard.condition_cleared  # query.entry / export.rows; scan.py sets it in SQL when a finding is gone
Hazard.cleared_at  # query.entry / export.rows; scan.py sets it in SQL
Hazard.verified_by  # query.entry / export.rows; workflow.transition sets it (close / reject)
Hazard.verified_at  # query.entry / export.rows; workflow.transition sets it (close / reject)
Hazard.verify_result  # query.entry / export.rows; workflow fields from ledger.yaml
Hazard.closed_at  # query.entry / export.rows; workflow.transition sets it (close / reopen)
Hazard.scanned_at  # query.entry / export.rows; scan.py sets it in SQL
Hazard.created_at  # query.entry / export.rows (server default)
Hazard.updated_at  # query.entry / export.rows; workflow.transition sets it
Hazard.is_current  # query.entry / export.rows (computed column)
HazardEvent.from_status  # query.entry reads the event fields by name; workflow / attachments set it
HazardEvent.to_status  # query.entry reads the event fields by name; workflow / attachments set it
HazardEvent.hazard  # SQLAlchemy: back_populates="hazard" of Hazard.events
HazardAttachment.uploaded_by  # query.entry reads the attachment fields by name; attachments.add sets it
HazardAttachment.uploaded_at  # query.entry reads the attachment fields by name (server default)
HazardAttachment.hazard  # SQLAlchemy: back_populates="hazard" of Hazard.attachments

# Request-body fields read as a whole (api/routers/hazards.py register_hazard: body.model_dump()).
Registration.responsible_unit  # HazardService.register / workflow.register, by ledger.yaml field name
Registration.responsible_person  # HazardService.register / workflow.register, by ledger.yaml field name
Registration.contact  # HazardService.register / workflow.register, by ledger.yaml field name
Registration.measures  # HazardService.register / workflow.register, by ledger.yaml field name
Registration.interim_controls  # HazardService.register / workflow.register, by ledger.yaml field name
Registration.reviewer  # HazardService.register / workflow.register, by ledger.yaml field name

# openpyxl attributes read when the workbook is written (cimplus/hazards/export.py xlsx).
