"""Training and evaluation of the knowledge-transfer students (no Qt)."""
