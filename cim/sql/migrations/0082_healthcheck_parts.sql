-- 0082 城市体检: the maintained membership of line and polygon features in the admin areas.
--
-- The indicators measure lines and polygons inside each admin area (pipe length by area, park area
-- by area) and inside each area's built-up part (drainage density, road density). Cutting every
-- feature by every area is most of the work of such an indicator, and it only changes when the
-- features, the admin areas or the built-up input change; so it is kept here, once per table for
-- every indicator over that table (cimplus/healthcheck/membership.py), and refreshed before a run
-- when stale.
--
-- A set (cim.healthcheck_part_set) is the membership of the current rows of one feature table of
-- some counties in the current admin areas of those counties (every level), or in the built-up
-- parts of those areas (kind 'builtup', from the built-up inputs named by builtup_inputs), measured
-- in the metric CRS srid. It records the data versions (cim.data_version) of the feature table and
-- of cim.admin_area it was computed from; a run uses a set only when those equal the versions its
-- own snapshot reads, so a set is never used after a delivery or an admin-area change it does not
-- reflect (the run then cuts the features itself, and the next refresh replaces the set).
--
-- A part (cim.healthcheck_part) is one feature inside one piece of an area (the areas cut by
-- ST_Subdivide): the whole feature's metric length or area (measure), the fraction of it inside
-- the piece (share) and, only where the feature crosses the piece's edge, the cut (part; NULL
-- where the feature lies wholly inside). sum(share * measure) per area is the exact length or
-- area inside it.
--
-- Both tables are derived data, rebuilt by the next run whenever missing: UNLOGGED (no WAL for the
-- 10⁵ rows of a refresh; after a crash both are empty, never one without the other).

CREATE UNLOGGED TABLE cim.healthcheck_part_set (
    id              bigserial PRIMARY KEY,
    counties        varchar(12)[] NOT NULL,           -- county codes of the features and the areas (sorted)
    source_table    text NOT NULL,                    -- feature table of schema cim
    kind            text NOT NULL CHECK (kind IN ('area', 'builtup')),
    srid            integer NOT NULL,                 -- metric CRS of `measure`
    builtup_inputs  bigint[] NOT NULL DEFAULT '{}',   -- kind 'builtup': cim.healthcheck_input ids used
    method          smallint NOT NULL,                -- how the parts were cut (a new method makes new sets)
    versions        jsonb NOT NULL,                   -- data versions computed from: {table: n, admin_area: n}
    parts           integer,                          -- rows in cim.healthcheck_part
    seconds         double precision,                 -- time the refresh took
    built_at        timestamptz NOT NULL DEFAULT now()
);
-- a scope's sets are looked up by (counties, table, kind); one refresh at a time per scope (an
-- advisory lock) adds a set only where none is current, and sets no run can use are deleted apart
CREATE INDEX healthcheck_part_set_scope_idx ON cim.healthcheck_part_set (counties, source_table, kind);

CREATE UNLOGGED TABLE cim.healthcheck_part (
    set_id      bigint NOT NULL,                      -- cim.healthcheck_part_set id (deleted with it; no foreign
                                                      -- key: a refresh inserts 10⁵ rows, each would be checked)
    feature_id  bigint NOT NULL,                      -- id of the row of the set's table
    network     varchar(2),                           -- its network (pipe tables): a run reading one network
                                                      -- reads only that network's parts
    area_id     bigint NOT NULL,                      -- cim.admin_area id
    measure     double precision,                     -- metric length (lines) or area (polygons) of the feature
    share       double precision NOT NULL,            -- fraction of the feature inside the piece
    part        geometry(Geometry, 4490)              -- the cut where the feature crosses the piece's edge
);
CREATE INDEX healthcheck_part_set_idx ON cim.healthcheck_part (set_id, network, feature_id);
-- the cuts (a tenth of the parts or fewer), for a spatial filter on the parts
CREATE INDEX healthcheck_part_geom_idx ON cim.healthcheck_part USING gist (part) WHERE part IS NOT NULL;
