"""Flashable images: cached per-platform bases (base.py, from the recipes in
image-builder/) and a node's image, a base plus its seed (seed.py, personalise.py)."""
