"""3D Tiles 1.1 (GLB + EXT_mesh_features/EXT_structural_metadata) of buildings and pipelines."""
