-- 0040 DEM storage and 3D Tiles support.
--
-- cim.dem registers GeoTIFF digital elevation models copied under $CIM_HOME/dem/. Exactly one
-- DEM is current at a time (the one the 3D building ground, the section profile and the
-- hillshade read); earlier ones stay registered for history.
CREATE TABLE cim.dem (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    file_path     text NOT NULL,          -- absolute path of the copy, $CIM_HOME/dem/<sha256>.tif
    sha256        char(64) NOT NULL,
    srid          integer,                -- EPSG code of the raster CRS when it has one
    crs_wkt       text NOT NULL,
    width         integer NOT NULL,
    height        integer NOT NULL,
    resolution_x  double precision NOT NULL,  -- pixel size in raster CRS units
    resolution_y  double precision NOT NULL,
    nodata        double precision,
    min_z         double precision,
    max_z         double precision,
    bounds        geometry(Polygon, 4490) NOT NULL,
    loaded_by     text NOT NULL,
    loaded_at     timestamptz NOT NULL DEFAULT now(),
    is_current    boolean NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX dem_one_current_idx ON cim.dem ((true)) WHERE is_current;
CREATE INDEX dem_bounds_idx ON cim.dem USING gist (bounds);

-- Data version of the DEM: 3D building tiles and hillshade caches key on it.
INSERT INTO cim.data_version (source_table) VALUES ('dem') ON CONFLICT DO NOTHING;
CREATE TRIGGER dem_version AFTER INSERT OR UPDATE OR DELETE ON cim.dem
    FOR EACH STATEMENT EXECUTE FUNCTION cim.bump_data_version();

-- 3D Tiles quadtree: each feature belongs to the tile holding the centre of its bounding box
-- (pg2b3dm's rule). Functional indexes make the per-cell counts and fetches index scans.
CREATE INDEX building_bbox_centre_idx ON cim.building
    USING gist (ST_Centroid(ST_Envelope(geom))) WHERE is_current;
CREATE INDEX pipe_segment_bbox_centre_idx ON cim.pipe_segment
    USING gist (ST_Centroid(ST_Envelope(geom))) WHERE is_current;
CREATE INDEX pipe_point_current_geom_idx ON cim.pipe_point USING gist (geom) WHERE is_current;
