"""Data inputs: toyland, image stores (region features, pixels), safe readers."""
