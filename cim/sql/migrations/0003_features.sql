-- 0003 feature tables of the city information model.
--
-- Every feature row carries its lineage: county_code, delivery_id, source_layer (the layer or
-- sheet name in the delivered file) and source_row (1-based row number in that layer).
-- `is_current` is true for rows of the delivery now in force for that county and layer;
-- rows of earlier deliveries stay with is_current = false so a delivery can be restored.
-- Public layers always filter on is_current.

-- Administrative areas: province / city / county / street / community (GB/T 2260 codes for
-- county and above; 9- and 12-digit statistical codes below).
CREATE TABLE cim.admin_area (
    id            bigserial PRIMARY KEY,
    code          varchar(12) NOT NULL,
    parent_code   varchar(12),
    name          text NOT NULL,
    level         text NOT NULL CHECK (level IN ('province', 'city', 'county', 'street', 'community')),
    area_m2       double precision,
    county_code   varchar(12) NOT NULL,
    delivery_id   bigint REFERENCES cim.delivery (id),
    source_layer  text,
    source_row    integer,
    is_current    boolean NOT NULL DEFAULT true,
    geom          geometry(MultiPolygon, 4490) NOT NULL
);
CREATE INDEX admin_area_geom_idx ON cim.admin_area USING gist (geom);
CREATE INDEX admin_area_code_idx ON cim.admin_area (code) WHERE is_current;
CREATE INDEX admin_area_delivery_idx ON cim.admin_area (delivery_id);

-- Buildings (房屋建筑调查 fields).
CREATE TABLE cim.building (
    id               bigserial PRIMARY KEY,
    code             text,
    name             text,
    address          text,
    floors_above     smallint CHECK (floors_above IS NULL OR floors_above >= 0),
    floors_below     smallint CHECK (floors_below IS NULL OR floors_below >= 0),
    height_m         double precision CHECK (height_m IS NULL OR height_m >= 0),
    building_area_m2 double precision,
    structure_type   text,        -- dict_structure_type
    build_year       smallint,
    build_era        text,        -- dict_build_era (建造年代 bucket 1..6)
    use_code         text,        -- dict_building_use
    use_subtype      text,
    appraisal_grade  char(1) CHECK (appraisal_grade IS NULL OR appraisal_grade IN ('A', 'B', 'C', 'D')),
    self_built       boolean,
    community_code   varchar(12),
    ground_z         double precision,  -- sampled from the DEM when one is loaded
    county_code      varchar(12) NOT NULL,
    delivery_id      bigint REFERENCES cim.delivery (id),
    source_layer     text,
    source_row       integer,
    is_current       boolean NOT NULL DEFAULT true,
    geom             geometry(MultiPolygon, 4490) NOT NULL
);
CREATE INDEX building_geom_idx ON cim.building USING gist (geom);
CREATE INDEX building_code_idx ON cim.building (code);
CREATE INDEX building_delivery_idx ON cim.building (delivery_id);

-- Pipeline points of every CJJ 61 network. Drainage nodes (检查井, 雨水口, 排放口, 泵站) live
-- in this table too, with node_type set and the drainage columns filled.
CREATE TABLE cim.pipe_point (
    id                bigserial PRIMARY KEY,
    network           varchar(2) NOT NULL CHECK (network IN ('JS', 'PS', 'RQ', 'RL', 'DL', 'TX', 'GY', 'QT')),
    subtype           varchar(2),          -- 小类 code: YS/WS/HS, TR, LD ...
    feature_code      char(8),             -- CJJ 61 附录F 8-digit code
    exp_no            text NOT NULL,       -- 物探点号: unique within a delivery only
    map_no            text,                -- 图上点号
    feature           text,                -- 特征点 (弯头, 三通 ...)
    appurtenance      text,                -- 附属物 (阀门, 检查井 ...)
    ground_z          double precision,    -- 地面高程 (1985 datum, m)
    well_depth        double precision,    -- 井底深 (m)
    depth             double precision,    -- 埋深 of a hidden point (m)
    well_cover        text,                -- 井盖规格 (Φ700, 600x600 ...)
    cover_material    text,
    road              text,
    owner             text,
    survey_unit       text,
    survey_date       date,
    install_year      smallint,
    status            text,                -- dict_pipe_status
    rotation          double precision,
    -- drainage node attributes (GB/T 51187 / 排水防涝设施普查)
    node_type         text,                -- dict_drainage_node: manhole / inlet / outfall / pump_station
    facility_uid      text,                -- 行政区划代码 + type + serial
    system_code       text,                -- 所属排水系统
    invert_z          double precision,    -- 井底 / 管底高程
    well_type         text,                -- 窨井, 跌水井, 沉泥井 ...
    anti_fall_net     boolean,             -- 防坠网
    inlet_form        text,                -- 雨水口型式: 平箅 / 立箅 / 联合
    grate_count       smallint,
    receiving_water   text,                -- 排放口: 受纳水体
    outfall_kind      text,                -- 排放口类别: 雨水 / 污水 / 合流 / 泵站出水
    outlet_size_mm    double precision,
    flap_gate         boolean,             -- 拍门 / 闸门
    normal_water_z    double precision,
    flood_water_z     double precision,
    pump_name         text,
    design_flow_m3s   double precision,
    installed_kw      double precision,
    pump_count        smallint,
    service_area_km2  double precision,
    county_code       varchar(12) NOT NULL,
    delivery_id       bigint REFERENCES cim.delivery (id),
    source_layer      text,
    source_row        integer,
    is_current        boolean NOT NULL DEFAULT true,
    geom              geometry(Point, 4490) NOT NULL,
    CHECK (feature IS NULL OR appurtenance IS NULL)      -- 特征 / 附属物 mutually exclusive
);
CREATE INDEX pipe_point_geom_idx ON cim.pipe_point USING gist (geom);
CREATE INDEX pipe_point_exp_idx ON cim.pipe_point (county_code, delivery_id, exp_no);
CREATE INDEX pipe_point_network_idx ON cim.pipe_point (network);
CREATE INDEX pipe_point_delivery_idx ON cim.pipe_point (delivery_id);

-- Pipeline segments of every network, gas and drainage included.
CREATE TABLE cim.pipe_segment (
    id                  bigserial PRIMARY KEY,
    network             varchar(2) NOT NULL CHECK (network IN ('JS', 'PS', 'RQ', 'RL', 'DL', 'TX', 'GY', 'QT')),
    subtype             varchar(2),
    feature_code        char(8),
    code                text,               -- 管段编号 when the delivery has one
    start_exp_no        text NOT NULL,      -- 起点点号
    end_exp_no          text NOT NULL,      -- 终点点号
    start_point_id      bigint REFERENCES cim.pipe_point (id),
    end_point_id        bigint REFERENCES cim.pipe_point (id),
    start_depth         double precision,   -- 起点埋深 (m)
    end_depth           double precision,   -- 终点埋深 (m)
    start_z             double precision,   -- 起点高程 (m)
    end_z               double precision,   -- 终点高程 (m)
    z_ref               text NOT NULL DEFAULT 'centre' CHECK (z_ref IN ('top', 'invert', 'centre')),
    diameter_mm         double precision,   -- round section
    width_mm            double precision,   -- W x H section
    height_mm           double precision,
    section_shape       text,               -- circle / rect / other
    material            text,               -- dict_material (CJJ 61 code or extension sub-code)
    burial_type         text,               -- dict_burial_type
    status              text,               -- dict_pipe_status
    pressure_class      text,               -- dict_pressure_class (gas)
    design_pressure_mpa double precision,
    wall_thickness_mm   double precision,
    voltage_kv          double precision,   -- power
    cable_count         smallint,           -- 电缆条数
    duct_total          smallint,           -- 总孔数
    duct_used           smallint,           -- 已用孔数
    flow_dir            smallint CHECK (flow_dir IS NULL OR flow_dir IN (-1, 1)),  -- +1 start→end
    joint_type          text,
    install_year        smallint,
    owner               text,
    road                text,
    data_source         text,               -- dict_data_source
    length_m            double precision,   -- 3D length in metres
    county_code         varchar(12) NOT NULL,
    delivery_id         bigint REFERENCES cim.delivery (id),
    source_layer        text,
    source_row          integer,
    is_current          boolean NOT NULL DEFAULT true,
    geom                geometry(LineString, 4490) NOT NULL
);
CREATE INDEX pipe_segment_geom_idx ON cim.pipe_segment USING gist (geom);
CREATE INDEX pipe_segment_network_idx ON cim.pipe_segment (network);
CREATE INDEX pipe_segment_delivery_idx ON cim.pipe_segment (delivery_id);

-- Green space (CJJ/T 85-2017).
CREATE TABLE cim.green_space (
    id            bigserial PRIMARY KEY,
    code          text,
    name          text,
    class_code    text,        -- dict_green_class 大类/中类 (G1, G2, G3, XG, EG)
    subclass_code text,        -- dict_green_class 中类/小类 (G11, G131, RG ...)
    area_m2       double precision,
    county_code   varchar(12) NOT NULL,
    delivery_id   bigint REFERENCES cim.delivery (id),
    source_layer  text,
    source_row    integer,
    is_current    boolean NOT NULL DEFAULT true,
    geom          geometry(MultiPolygon, 4490) NOT NULL
);
CREATE INDEX green_space_geom_idx ON cim.green_space USING gist (geom);
CREATE INDEX green_space_delivery_idx ON cim.green_space (delivery_id);

-- Streetlights.
CREATE TABLE cim.streetlight (
    id               bigserial PRIMARY KEY,
    pole_no          text NOT NULL,
    road_name        text,
    road_class       text,        -- dict_road_class
    pole_type        text,        -- dict_pole_type
    pole_height_m    double precision,
    arm_length_m     double precision,
    lamp_count       smallint,
    lamp_type        text,        -- dict_lamp_type
    wattage_w        double precision,
    cabinet_no       text,        -- 控制箱 / 配电箱编号
    circuit_no       text,        -- 回路号
    controller_id    text,        -- 单灯控制器 ID
    install_date     date,
    owner            text,
    status           text,        -- dict_light_status
    last_inspection  date,
    county_code      varchar(12) NOT NULL,
    delivery_id      bigint REFERENCES cim.delivery (id),
    source_layer     text,
    source_row       integer,
    is_current       boolean NOT NULL DEFAULT true,
    geom             geometry(Point, 4490) NOT NULL
);
CREATE INDEX streetlight_geom_idx ON cim.streetlight USING gist (geom);
CREATE INDEX streetlight_delivery_idx ON cim.streetlight (delivery_id);

-- Data-version triggers: any change to a feature table bumps its counter.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['admin_area', 'building', 'pipe_point', 'pipe_segment',
                             'green_space', 'streetlight'] LOOP
        INSERT INTO cim.data_version (source_table) VALUES (t) ON CONFLICT DO NOTHING;
        EXECUTE format('CREATE TRIGGER %1$s_version AFTER INSERT OR UPDATE OR DELETE ON cim.%1$I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION cim.bump_data_version()', t);
        EXECUTE format('CREATE TRIGGER %1$s_version_truncate AFTER TRUNCATE ON cim.%1$I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION cim.bump_data_version()', t);
    END LOOP;
END $$;
