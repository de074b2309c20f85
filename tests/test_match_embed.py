"""``--method embed``: the vector is dlib's face descriptor of the crop as given (colour by
default, grey only with ``gray=True``).

tests/test_match.py checks that the embedding ranks an identical face first and that the index
stores what ``extract`` returns; neither notices a wrong vector that is still a deterministic
function of the face (seen in the issue 17 break check: the default embedding fed grey images
and every test passed). These pin the vector itself against dlib, called directly.
"""

from __future__ import annotations

import numpy as np
import pytest

from sketchstudio.imaging import to_gray
from sketchstudio.match.spaces import TEMPLATE_SIZE
from tests.conftest import face_like

W, H = TEMPLATE_SIZE


def _grey(img: np.ndarray) -> np.ndarray:
    return np.repeat(to_gray(img)[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def dlib_ref():
    """dlib's own descriptor, computed without SketchStudio's wrapper, in the documented box."""
    dlib = pytest.importorskip("dlib")
    from sketchstudio.faces.models import embedding_model_paths
    from sketchstudio.match.spaces import DlibEmbedding

    sp_path, rec_path = embedding_model_paths(None)
    sp, rec = dlib.shape_predictor(str(sp_path)), dlib.face_recognition_model_v1(str(rec_path))
    box = dlib.rectangle(*DlibEmbedding.FACE_BOX)

    def descriptor(img: np.ndarray) -> np.ndarray:
        img = np.ascontiguousarray(img)
        return np.asarray(rec.compute_face_descriptor(img, sp(img, box)), dtype=np.float32)

    return descriptor


def test_embed_vector_is_dlibs_descriptor_of_the_colour_crop(dlib_ref):
    from sketchstudio.match.spaces import DlibEmbedding

    emb = DlibEmbedding()
    assert emb.gray is False  # the default --method embed
    colour = face_like(4, W, H)
    v = emb.extract(colour)
    assert v.shape == (128,) and v.dtype == np.float32
    np.testing.assert_allclose(v, dlib_ref(colour), atol=1e-5)
    # colour is seen: the grey version of the same face gives another vector
    assert not np.allclose(v, emb.extract(_grey(colour)), atol=1e-4)
    # a crop of another size is brought to the template first
    small = colour[::2, ::2].copy()
    from sketchstudio.match.spaces import as_template

    np.testing.assert_allclose(emb.extract(small), dlib_ref(as_template(small)), atol=1e-5)


def test_embed_gray_feeds_the_grey_image(dlib_ref):
    from sketchstudio.match.spaces import DlibEmbedding

    emb = DlibEmbedding(gray=True)
    colour = face_like(7, W, H)
    v = emb.extract(colour)
    np.testing.assert_allclose(v, dlib_ref(_grey(colour)), atol=1e-5)
    assert not np.allclose(v, dlib_ref(colour), atol=1e-4)
    assert emb.fingerprint != DlibEmbedding().fingerprint  # an index of one is not reused by the other
