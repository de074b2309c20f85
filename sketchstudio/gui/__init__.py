"""The PySide6 desktop app. The only package that imports Qt; it drives the core and the trainer.

Rules (DESIGN.md): the UI thread never runs torch — every model call happens in a QObject worker
moved to a QThread (``workers.py``) that reports back through signals; torch is imported lazily, after
the window is shown, so start-up stays fast.
"""
