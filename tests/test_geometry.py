"""Exact values of the alignment geometry (issue 17's mutation pass): the crop box that paste-back
warps, eye ordering and validation at their boundaries, and the similarity for a tilted template.

The footprint cases use a crop whose four corners each set one side of the box alone (a 53° turn
at scale 2), so moving any corner, the margin or the clipping changes the answer.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sketchstudio.errors import EyePositionError
from sketchstudio.faces import geometry as geo

# original = A @ crop + c, with A a 53.13° rotation at scale 2 (exact decimals): 1.2 / 1.6
A = np.array([[1.2, -1.6], [1.6, 1.2]])


def crop_matrix(c: tuple[float, float]) -> np.ndarray:
    """The 2×3 original → crop matrix whose inverse is ``A @ crop + c``."""
    return geo.invert_affine(np.hstack([A, np.array(c, np.float64)[:, None]]))


# a 10×20 crop, c = (50, 60): its corners land at x 50.2, 62.2, 18.2, 30.2 and y 58.6, 74.6,
# 82.6, 98.6 (worked by hand), so the box is floor/ceil of (18.2, 58.6) – (62.2, 98.6) ± margin
@pytest.mark.parametrize("bounds, margin, want", [
    ((200, 200), 2, (16, 56, 66, 102)),
    ((200, 200), 0, (18, 58, 64, 100)),
    ((60, 90), 2, (16, 56, 60, 90)),  # clipped at the image's right and bottom
    ((10, 10), 2, None),  # the crop lies wholly outside a 10×10 image
    ((10, 200), 2, None),  # outside in x only
    ((200, 10), 2, None),  # outside in y only
    ((16, 200), 2, None),  # the box would be 0 px wide
    ((200, 56), 2, None),  # 0 px high
])
def test_footprint_by_exact_values(bounds, margin, want):
    assert geo.footprint(crop_matrix((50.0, 60.0)), (10, 20), bounds, margin=margin) == want


def test_footprint_default_margin_and_clipping_at_the_origin():
    m = crop_matrix((50.0, 60.0))
    assert geo.footprint(m, (10, 20), (200, 200)) == (16, 56, 66, 102)  # margin 2 by default
    # shifted so the box would start left of / above the image: clipped to 0, not 1
    assert geo.footprint(crop_matrix((33.0, 2.6)), (10, 20), (200, 200)) == (0, 0, 49, 45)


def test_every_crop_pixel_lies_inside_its_footprint():
    """What paste-back relies on: each original pixel that lands in the crop is in the box."""
    m = crop_matrix((50.0, 60.0))
    x0, y0, x1, y1 = geo.footprint(m, (10, 20), (200, 200), margin=0)
    ys, xs = np.mgrid[0:200, 0:200]
    uv = geo.apply_affine(m, np.stack([xs.ravel(), ys.ravel()], 1))
    inside = (uv[:, 0] >= -0.5) & (uv[:, 0] <= 9.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= 19.5)
    assert inside.sum() > 100
    assert xs.ravel()[inside].min() >= x0 and xs.ravel()[inside].max() < x1
    assert ys.ravel()[inside].min() >= y0 and ys.ravel()[inside].max() < y1


def test_order_eyes_by_x_then_y():
    assert geo.order_eyes((5, 1), (2, 9)) == ((2.0, 9.0), (5.0, 1.0))
    assert geo.order_eyes((2, 9), (5, 1)) == ((2.0, 9.0), (5.0, 1.0))
    # same x: the upper point (smaller y) first, whichever order they come in
    assert geo.order_eyes((4, 7), (4, 3)) == ((4.0, 3.0), (4.0, 7.0))
    assert geo.order_eyes((4, 3), (4, 7)) == ((4.0, 3.0), (4.0, 7.0))
    # x decides even when the other point's y is smaller than this one's x
    assert geo.order_eyes((3, 50), (8, 1)) == ((3.0, 50.0), (8.0, 1.0))
    out = geo.order_eyes(np.array([1, 2]), np.array([0, 5]))
    assert out == ((0.0, 5.0), (1.0, 2.0)) and all(type(v) is float for p in out for v in p)


def test_validate_eyes_accepts_the_image_edges_and_refuses_beyond():
    # pixel centres run 0..W-1; a click may land on the outer half of an edge pixel
    assert geo.validate_eyes(((-0.5, -0.5), (99.5, 49.5)), 100, 50) == ((-0.5, -0.5), (99.5, 49.5))
    assert geo.validate_eyes(((0, 0), (10, 0)), 100, 50) == ((0.0, 0.0), (10.0, 0.0))
    # a face lying on its side: eyes one above the other, 30 px apart
    assert geo.validate_eyes(((10, 40), (10, 10)), 100, 50) == ((10.0, 10.0), (10.0, 40.0))
    assert geo.validate_eyes(((10, 10), (13, 14)), 100, 50)  # exactly 5 px apart is enough
    for bad in (((-0.6, 10), (20, 10)), ((-1.0, 10), (20, 10)), ((10, -0.6), (20, 10)),
                ((10, 10), (99.6, 10)), ((10, 10), (20, 49.6))):
        with pytest.raises(EyePositionError, match="outside the 100×50 image"):
            geo.validate_eyes(bad, 100, 50)


def test_validate_eyes_messages_and_causes():
    with pytest.raises(EyePositionError) as e:
        geo.validate_eyes(((1, 2), (3, "x")), 100, 100)  # not numbers: numpy's ValueError kept
    assert str(e.value) == "Eye positions must be two points, ((x1, y1), (x2, y2)), in image pixels."
    assert isinstance(e.value.__cause__, ValueError)
    with pytest.raises(EyePositionError) as e:
        geo.validate_eyes(((1, 2),), 100, 100)  # a wrong shape has no underlying error
    assert e.value.__cause__ is None
    with pytest.raises(EyePositionError) as e:
        geo.validate_eyes(((10, 10), (12, 10)), 100, 100)
    assert str(e.value) == ("The two eye positions are only 2.0 px apart (at least 5 px needed). "
                            "Put one marker on each eye.")
    with pytest.raises(EyePositionError) as e:
        geo.validate_eyes(((10, 10), (200.4, 70.6)), 100, 100)
    assert str(e.value) == ("Eye position (200, 71) is outside the 100×100 image. "
                            "Put both eye markers on the eyes.")


def test_similarity_onto_a_tilted_template():
    """The template's own tilt counts (the default template is level, which hides a lost
    y-difference)."""
    tilted = ((10.0, 20.0), (40.0, 60.0))
    eyes = ((3.0, 4.0), (8.0, 4.0))
    m = geo.similarity_to_template(eyes, tilted)
    np.testing.assert_allclose(geo.apply_affine(m, eyes), tilted, atol=1e-12)
    assert geo.matrix_scale(m) == pytest.approx(50.0 / 5.0)
    assert math.degrees(math.atan2(m[1, 0], m[0, 0])) == pytest.approx(math.degrees(math.atan2(40, 30)))


def test_similarity_refuses_coinciding_eyes_only():
    with pytest.raises(EyePositionError) as e:
        geo.similarity_to_template(((5.0, 5.0), (5.0, 5.0)))
    assert str(e.value) == "The two eye positions coincide; cannot align the face."
    m = geo.similarity_to_template(((5.0, 5.0), (6.0, 5.0)))  # one pixel apart still aligns
    assert geo.matrix_scale(m) == pytest.approx(50.0)


def test_translate_and_matrix_scale_by_exact_values():
    m = np.array([[2.0, 0.0, 1.0], [0.0, 2.0, 3.0]])
    # points given in a sub-image at (10, 20): x_full = x_sub + 10
    np.testing.assert_array_equal(geo.translate(m, 10, 20), [[2.0, 0.0, 21.0], [0.0, 2.0, 43.0]])
    np.testing.assert_array_equal(m, [[2.0, 0.0, 1.0], [0.0, 2.0, 3.0]])  # not modified
    np.testing.assert_allclose(geo.apply_affine(geo.translate(m, 10, 20), [(1, 1)]),
                               geo.apply_affine(m, [(11, 21)]))
    assert geo.matrix_scale(m) == 2.0
    # an integer matrix (e.g. typed in) still takes a sub-pixel offset
    np.testing.assert_array_equal(geo.translate(np.array([[1, 0, 0], [0, 1, 0]]), 0.5, 0.25),
                                  [[1.0, 0.0, 0.5], [0.0, 1.0, 0.25]])
    assert geo.matrix_scale(np.array([[0.0, -3.0, 5.0], [3.0, 0.0, 1.0]])) == pytest.approx(3.0)  # turned
    np.testing.assert_array_equal(geo.to_3x3(m), [[2, 0, 1], [0, 2, 3], [0, 0, 1]])
