"""The demo county: a synthetic survey delivery for 鼎城区 (430703) as a contractor hands it over.

``cim demo generate`` (:mod:`demo.cli`) writes it; :func:`demo.generate.generate`
is the library entry point.
"""

from demo.cli import app

__all__ = ["app"]
