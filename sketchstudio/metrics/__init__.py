"""Image-quality and recognition metrics (no Qt)."""
