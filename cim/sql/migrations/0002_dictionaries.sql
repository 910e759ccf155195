-- 0002 dictionaries. Rows are seeded from cim/seed/dictionaries.yaml (data, not code):
-- the standard code is the key; our extensions are child codes (parent_code points to the
-- standard code, e.g. ZT-HK 灰口铸铁 under ZT 铸铁).

CREATE FUNCTION cim._make_dict(tbl text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($f$
        CREATE TABLE cim.%1$I (
            code         text PRIMARY KEY,
            parent_code  text REFERENCES cim.%1$I (code),
            name_zh      text NOT NULL,
            name_en      text,
            standard     text,
            extension    boolean NOT NULL DEFAULT false,
            attrs        jsonb NOT NULL DEFAULT '{}'::jsonb
        )$f$, tbl);
END $$;

SELECT cim._make_dict(t) FROM unnest(ARRAY[
    'dict_network',          -- CJJ 61 大类 and 小类 (JS, PS/YS/WS/HS, RQ/TR ...), colour in attrs
    'dict_material',         -- 管线材质 C.0.1 plus extension sub-codes
    'dict_burial_type',      -- 埋设方式 C.0.2
    'dict_pipe_status',      -- 管线状态 C.0.3
    'dict_point_code',       -- 特征点 / 附属物 (8-digit feature codes, kind in attrs)
    'dict_pressure_class',   -- 燃气压力级制 with MPa range in attrs
    'dict_z_ref',            -- elevation reference: top / invert / centre
    'dict_drainage_node',    -- 检查井 / 雨水口 / 排放口 / 泵站
    'dict_green_class',      -- CJJ/T 85-2017 绿地分类
    'dict_structure_type',   -- 房屋结构类型
    'dict_build_era',        -- 建造年代 bucket
    'dict_building_use',     -- 房屋用途
    'dict_appraisal_grade',  -- 安全鉴定等级 A-D
    'dict_data_source',      -- 数据来源 1 探测 2 施工图 3 竣工图 4 推测
    'dict_road_class',       -- 道路等级
    'dict_lamp_type',        -- 光源类型
    'dict_pole_type',        -- 灯杆类型
    'dict_light_status'      -- 路灯状态
]) AS t;

DROP FUNCTION cim._make_dict(text);
