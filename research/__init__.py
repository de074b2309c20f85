"""Tools that regenerate SketchStudio's own documents; run from a checkout, never installed.

Each module is a command, ``python -m research.NAME --help`` from the repository root:

- ``alignment_eval``: eye-detection accuracy on CUFS crops and the eye-offset calibration
  (docs/alignment_eval.md, ``sketchstudio.faces.detect.EYE_CORRECTION``);
- ``nlda_fit``: fits the NLDA projection the matcher ships (sketchstudio/assets/matching/);
- ``recognition_eval``: rank-k matching rates on a paired test set (docs/matching_eval.md);
- ``fsim_calibration``: what FSIM numbers mean next to simple stand-ins (README, model card);
- ``report``: the model card's loss/validation curves and example grid (needs matplotlib).

They are not product code: a user of the app or of ``sketchstudio-*`` never needs them, so the
wheel leaves them out (``[tool.setuptools.packages.find]`` includes only ``sketchstudio`` and
``trainer``; tests/test_architecture.py builds the wheel and checks). They may import anything
below them (the core, the trainer); nothing in ``sketchstudio`` or ``trainer`` imports them.
"""
