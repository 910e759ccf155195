"""The demo county: a synthetic survey delivery for 鼎城区 (430703) as a contractor hands it over.

``cim demo generate`` (:mod:`ingest.demo.cli`) writes it; :func:`ingest.demo.generate.generate`
is the library entry point.
"""

from ingest.demo.cli import app

__all__ = ["app"]
