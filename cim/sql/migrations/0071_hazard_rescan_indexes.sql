-- 0071 indexes for incremental hazard rescans (cimplus/hazards/changes.py).
--
-- A rescan asks, per scope, which deliveries still have current rows. A replaced delivery keeps
-- all its rows (is_current false), so probing it through the plain delivery_id index reads every
-- one of them; these partial indexes hold only current rows, and a replaced delivery answers at
-- once.
CREATE INDEX building_current_delivery_idx ON cim.building (delivery_id) WHERE is_current;
CREATE INDEX pipe_segment_current_delivery_idx ON cim.pipe_segment (delivery_id, network) WHERE is_current;
CREATE INDEX pipe_point_current_delivery_idx ON cim.pipe_point (delivery_id, network) WHERE is_current;
