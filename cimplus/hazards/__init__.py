"""风险隐患台账: the facility hazard ledger (设施危险源及风险隐患管理台账, domain.md §4).

Hazards are found by automatic rules over the stored city model (``rules.yaml``, evaluated
by set-based PostGIS SQL in :mod:`detect`, reconciled with the ledger idempotently by
:mod:`scan`, incrementally after a delivery through :mod:`changes`) or registered by people,
and carried through 排查 → 登记 → 整改 → 验收 → 销号 by the workflow of ``ledger.yaml``
(:mod:`workflow`, on the ORM models of :mod:`model`). :mod:`query` reads the ledger, :mod:`export`
writes it as xlsx and printable HTML, :mod:`attachments` keeps photos and reports, and
:class:`service.HazardService` offers all of it to the API and the ``cim hazards`` commands.
"""
