-- 0120 a load retires the rows it replaces without reading other counties' rows.
--
-- The rows a load retires are the current rows of its county and scopes. Finding them by
-- county_code alone read the whole table (no index starts with county_code on most feature
-- tables): 0.1–0.7 s on a table of a few million rows, growing with every county an instance
-- holds. Rows loaded by a delivery are now found through the county's current deliveries
-- (the delivery_id indexes); these partial indexes find the county's rows that no delivery
-- wrote. A delivered row has a delivery_id, so a load adds nothing to them.

CREATE INDEX admin_area_undelivered_idx ON cim.admin_area (county_code) WHERE delivery_id IS NULL;
CREATE INDEX building_undelivered_idx ON cim.building (county_code) WHERE delivery_id IS NULL;
CREATE INDEX pipe_point_undelivered_idx ON cim.pipe_point (county_code) WHERE delivery_id IS NULL;
CREATE INDEX pipe_segment_undelivered_idx ON cim.pipe_segment (county_code) WHERE delivery_id IS NULL;
CREATE INDEX green_space_undelivered_idx ON cim.green_space (county_code) WHERE delivery_id IS NULL;
CREATE INDEX streetlight_undelivered_idx ON cim.streetlight (county_code) WHERE delivery_id IS NULL;
CREATE INDEX road_undelivered_idx ON cim.road (county_code) WHERE delivery_id IS NULL;
