"""Province-wide batch: the jobs that outgrow one machine, run as Dask tasks.

3D Tiles builds (:mod:`batch.threed`, partitioned by tile block: subtrees of the layer's quadtree)
and PMTiles pyramid exports (:mod:`batch.pmtiles`, partitioned by runs of the tile-id order,
which at each zoom are compact blocks of the map) on a ``distributed.LocalCluster`` by default or
on a running Dask cluster (``--scheduler tcp://host:8786``), and per-county jobs, one task per
county (:mod:`batch.counties`): hazard scans (:mod:`batch.hazards`) and health-check runs
(:mod:`batch.healthcheck`). The package sits above ``tiles`` and ``cimplus`` (it may
import both; they never import it nor each other); the units of work it ships are plain functions
of those packages, so the files and rows written are the same as their single-process paths write.
"""
