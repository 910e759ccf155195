"""The declarative layer catalogue: one validated spec per public layer."""
