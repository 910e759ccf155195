"""CIM+ applications on the city model: the hazard ledger (``cimplus.hazards``) and the urban
health check (``cimplus.healthcheck``).

They read the model the ingest loaded (through the table model of :mod:`cim.schema` and the
layer catalogue) and keep their own records; imports point downwards only
(``api → cimplus → layers → cim``): cimplus never imports ``ingest`` or ``tiles``, they meet in
the database.
"""
