"""Per-frame conversion: colour match, masks, blending and compositing, and the convert pipeline."""
