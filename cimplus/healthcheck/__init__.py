"""城市体检 (urban health check): indicators per admin area computed from the city model.

The indicator catalogue is data (``indicators.yaml``: names, levels, units, thresholds with their
sources, inputs, parameters and set-based SQL formulas over the layer catalogue); a run computes
every indicator for every admin area of the chosen levels, one statement per indicator, and
stores the values immutably with the data versions and inputs it used, so this year can be
compared with last year. :class:`~cimplus.healthcheck.service.HealthCheck` is the one entry point
of the API and the CLI (``cim healthcheck``); docs/healthcheck.md describes the whole.
"""
