"""The ledger's records as typed SQLAlchemy 2.0 models (GeoAlchemy2 for the geometries).

Tables are created by migration 0070 (``cim/sql/migrations``); these classes map them. The
entry's ``version`` column is the ORM's ``version_id_col``: every flush of a changed entry runs
``UPDATE … WHERE id = :id AND version = :seen`` and raises :class:`sqlalchemy.orm.exc.StaleDataError`
when another transaction changed it first (the workflow turns that into a 409 with the current
state). Bulk scans write the same tables with set-based SQL (:mod:`cimplus.hazards.scan`) and
raise ``version`` the same way.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Models of schema ``cim``."""

    metadata = MetaData(schema="cim")


class Hazard(Base):
    """One ledger entry (``cim.hazard``)."""

    __tablename__ = "hazard"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    number: Mapped[str] = mapped_column(Text, unique=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str] = mapped_column(Text)
    rule_id: Mapped[str | None] = mapped_column(Text)
    rule_key: Mapped[str | None] = mapped_column(Text)
    facility_type: Mapped[str] = mapped_column(Text)
    facility_refs: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    facility_keys: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    province_code: Mapped[str | None] = mapped_column(String(12))
    city_code: Mapped[str | None] = mapped_column(String(12))
    county_code: Mapped[str] = mapped_column(String(12))
    street_code: Mapped[str | None] = mapped_column(String(12))
    community_code: Mapped[str | None] = mapped_column(String(12))
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(Text)
    hazard_class: Mapped[str] = mapped_column(Text, default="general")
    risk_level: Mapped[int] = mapped_column(SmallInteger)
    found_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    found_by: Mapped[str] = mapped_column(Text)
    responsible_unit: Mapped[str | None] = mapped_column(Text)
    responsible_person: Mapped[str | None] = mapped_column(Text)
    contact: Mapped[str | None] = mapped_column(Text)
    measures: Mapped[str | None] = mapped_column(Text)
    interim_controls: Mapped[str | None] = mapped_column(Text)
    budget: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    deadline: Mapped[dt.date | None] = mapped_column(Date)
    reviewer: Mapped[str | None] = mapped_column(Text)
    supervision: Mapped[str] = mapped_column(Text, default="none")
    status: Mapped[str] = mapped_column(Text)
    condition_cleared: Mapped[bool] = mapped_column(Boolean, default=False)
    cleared_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    verified_by: Mapped[str | None] = mapped_column(Text)
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    verify_result: Mapped[str | None] = mapped_column(Text)
    closed_by: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    previous_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("cim.hazard.id"))
    scanned_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    shape: Mapped[Any] = mapped_column(Geometry("GEOMETRY", srid=4490, spatial_index=False))   # the finding
    geom: Mapped[Any] = mapped_column(Geometry("POINT", srid=4490, spatial_index=False))       # its map marker
    is_current: Mapped[bool] = mapped_column(Boolean, Computed("status NOT IN ('closed', 'dismissed')"))

    events: Mapped[list[HazardEvent]] = relationship(back_populates="hazard", order_by="HazardEvent.id",
                                                      lazy="raise", cascade="save-update")
    attachments: Mapped[list[HazardAttachment]] = relationship(back_populates="hazard",
                                                                order_by="HazardAttachment.id", lazy="raise")

    __mapper_args__ = {"version_id_col": version}


class HazardEvent(Base):
    """One change of an entry (``cim.hazard_event``): who, when, from, to, comment, changed fields."""

    __tablename__ = "hazard_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hazard_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("cim.hazard.id"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(Text)
    role: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    version: Mapped[int | None] = mapped_column(Integer)

    hazard: Mapped[Hazard] = relationship(back_populates="events")


class HazardAttachment(Base):
    """A photo or report of an entry (``cim.hazard_attachment``); the bytes are stored by SHA-256."""

    __tablename__ = "hazard_attachment"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hazard_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("cim.hazard.id"))
    kind: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    file_name: Mapped[str] = mapped_column(Text)
    caption: Mapped[str | None] = mapped_column(Text)
    uploaded_by: Mapped[str] = mapped_column(Text)
    uploaded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    hazard: Mapped[Hazard] = relationship(back_populates="attachments")
