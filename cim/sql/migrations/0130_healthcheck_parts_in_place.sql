-- 0130 城市体检: a stored membership set is brought up to date in place.
--
-- A delivery replaces some rows of a feature table; the parts of every other row are still right.
-- Each part now records the row version it was cut from (feature_xmin: the xmin of the feature's
-- row, which any UPDATE of the row, re-activation or renumbering changes), so a refresh deletes the
-- parts whose row is no longer current as it was cut and cuts only the current rows the set does
-- not hold (cimplus/healthcheck/membership.py), instead of cutting the whole table again. The sets
-- are derived data: the existing ones, without row versions, are emptied and the next run rebuilds
-- them.

TRUNCATE cim.healthcheck_part, cim.healthcheck_part_set;
ALTER TABLE cim.healthcheck_part ADD COLUMN feature_xmin xid NOT NULL;
