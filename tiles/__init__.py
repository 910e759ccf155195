"""Vector tiles, 3D Tiles and the tile cache."""
