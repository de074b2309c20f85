"""The model vocabulary that code without torch needs too (the GUI's forms, config files).

Imported by the networks and by the GUI before torch is loaded, so the names exist once.
"""

from __future__ import annotations

#: Tap names of a student in forward order; the knowledge-transfer pairing tables refer to these.
TAP_NAMES: tuple[str, ...] = ("IC", "DC1", "DC2", "Block", "UC1", "UC2")
#: "deconv": the paper's k3 s2 transposed convolutions; "resize": nearest ×2 then a k3 conv
#: (Odena et al., "Deconvolution and checkerboard artifacts", 2016): every output pixel gets the
#: same number of kernel taps, so the stride-2 grid cannot appear in the outputs.
UPSAMPLE_MODES: tuple[str, ...] = ("deconv", "resize")
