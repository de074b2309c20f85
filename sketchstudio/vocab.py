"""The model vocabulary, stated once: directions, eye points, tap names and widths, KT pairings.

Plain Python, no torch and no numpy: the GUI's forms and feature view, config files, the CLIs and
the trainer all import these names before (or without) loading a network, so every module spells
a direction, a tap or a pairing the same way. The networks (:mod:`sketchstudio.models`), the
checkpoint format (:mod:`sketchstudio.checkpoint`) and the KT losses (:mod:`trainer.losses`,
which re-exports the pairing tables) build on them.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------- directions
PHOTO2SKETCH = "photo2sketch"
SKETCH2PHOTO = "sketch2photo"
#: The two translation directions, in the order the app lists them.
DIRECTIONS: tuple[str, ...] = (PHOTO2SKETCH, SKETCH2PHOTO)
#: What a user may ask for: a direction, or "auto" (guessed from the image).
DIRECTION_CHOICES: tuple[str, ...] = ("auto", *DIRECTIONS)
#: direction -> the student that translates it, also its tensor prefix in a checkpoint
#: (METHOD.md: G turns photos into sketches, F sketches into photos).
DIRECTION_NET: dict[str, str] = {PHOTO2SKETCH: "G", SKETCH2PHOTO: "F"}
#: direction -> the kind of image it takes ("photo" | "sketch"), e.g. for face detection
DIRECTION_INPUT: dict[str, str] = {PHOTO2SKETCH: "photo", SKETCH2PHOTO: "sketch"}

# ---------------------------------------------------------------------------------- run files
#: What a training run writes and resumes from (trainer.rundir), and what a run folder given as a
#: model is searched for first (sketchstudio.checkpoint.CHECKPOINT_NAMES).
CHECKPOINT_FILE = "checkpoint.safetensors"
#: The model files a run folder given as a model may hold, the run's own checkpoint first.
CHECKPOINT_NAMES: tuple[str, ...] = (CHECKPOINT_FILE, "model.safetensors")

# --------------------------------------------------------------------------------- eye points
Point = tuple[float, float]
#: (left, right) eye centres in image pixels; the one type manual eyes and alignment exchange.
Eyes = tuple[Point, Point]

# ---------------------------------------------------------------------------------------- taps
#: Tap names of a student in forward order; the knowledge-transfer pairing tables refer to these.
TAP_NAMES: tuple[str, ...] = ("IC", "DC1", "DC2", "Block", "UC1", "UC2")
#: Channels of each student tap, as a multiple of ``ngf`` (the encoder doubles twice, the
#: decoder halves back).
TAP_WIDTHS: dict[str, int] = {"IC": 1, "DC1": 2, "DC2": 4, "Block": 4, "UC1": 2, "UC2": 1}
#: Teacher (VGG-19) taps in forward order and their channels.
TEACHER_TAPS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1")
TEACHER_CHANNELS: dict[str, int] = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256}
#: "deconv": the paper's k3 s2 transposed convolutions; "resize": nearest ×2 then a k3 conv
#: (Odena et al., "Deconvolution and checkerboard artifacts", 2016): every output pixel gets the
#: same number of kernel taps, so the stride-2 grid cannot appear in the outputs.
UPSAMPLE_MODES: tuple[str, ...] = ("deconv", "resize")

# ------------------------------------------------------------------------------ pairing tables
#: METHOD.md's teacher pairings, (teacher side "P" photo | "S" sketch, teacher tap, student tap),
#: the j-th with the j-th: G's encoder learns the photo teacher's features and its decoder the
#: sketch teacher's, F the other way round. The GUI's feature view shows the same pairs.
G_TEACHER_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("P", "relu1_1", "IC"), ("P", "relu2_1", "DC1"), ("P", "relu3_1", "DC2"),
    ("S", "relu3_1", "Block"), ("S", "relu2_1", "UC1"), ("S", "relu1_1", "UC2"),
)
F_TEACHER_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("P", "relu1_1", "UC2"), ("P", "relu2_1", "UC1"), ("P", "relu3_1", "Block"),
    ("S", "relu3_1", "DC2"), ("S", "relu2_1", "DC1"), ("S", "relu1_1", "IC"),
)
#: (G tap, F tap): the student-student pairs, G's encoder with F's decoder and back.
STUDENT_PAIRS: tuple[tuple[str, str], ...] = (
    ("IC", "UC2"), ("DC1", "UC1"), ("DC2", "Block"), ("Block", "DC2"), ("UC1", "DC1"), ("UC2", "IC"),
)
#: The pairing table of each direction's student.
TEACHER_PAIRS: dict[str, tuple[tuple[str, str, str], ...]] = {
    PHOTO2SKETCH: G_TEACHER_PAIRS, SKETCH2PHOTO: F_TEACHER_PAIRS}
