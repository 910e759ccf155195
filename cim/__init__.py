"""CIM core: settings, database, schema and migrations, CRS rules, access control, errors."""
