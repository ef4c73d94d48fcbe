"""The Python API takes array-likes (lists, numpy, memory maps, torch) and refuses anything else
with the same one-line InputError as the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sotalign import SOTAlign
from sotalign.errors import InputError


@pytest.fixture(scope="module")
def pairs(two_view):
    return two_view.pairs(120, 1)


def test_lists_memmaps_and_tensors_fit_like_arrays(pairs, tmp_path):
    A, B = pairs
    ref = SOTAlign(method="cca").fit(A, B)
    np.save(tmp_path / "A.npy", A)
    mm = np.load(tmp_path / "A.npy", mmap_mode="r")
    for a, b in [(A.tolist(), B.tolist()), (mm, B), (torch.as_tensor(A), torch.as_tensor(B))]:
        est = SOTAlign(method="cca").fit(a, b)
        np.testing.assert_allclose(est.encode_images(A[:5]), ref.encode_images(A[:5]), atol=1e-5)
    out = ref.encode_texts(B[:3].tolist())
    assert isinstance(out, np.ndarray) and out.shape == (3, ref.encode_texts(B[:3]).shape[1])


@pytest.mark.parametrize(
    ("args", "match"),
    [((None, "B"), "paired images: required, got None"),
     (("A", "abc"), "paired texts: expected a 2-D array of embeddings"),
     (("A", [[1.0, 2.0], [3.0]]), "paired texts: expected a 2-D array"),
     (("A", "B", [[0.5] * 64], None), "unpaired images"),
     (([1.0, 2.0, 3.0], "B"), "paired images: expected a 2-D array")],
)  # fmt: skip
def test_bad_inputs_end_in_one_line(pairs, args, match):
    A, B = pairs
    real = [A if a == "A" else B if a == "B" else a for a in args]
    with pytest.raises(InputError, match=match) as exc:
        SOTAlign(method="cca").fit(*real)
    assert "\n" not in str(exc.value)


def test_save_to_a_file_and_encode_none_are_refused(pairs, tmp_path):
    A, B = pairs
    est = SOTAlign(method="cca").fit(A, B)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="exists and is a file"):
        est.save(tmp_path / "file.txt")
    with pytest.raises(InputError, match="texts: required"):
        est.encode_texts(None)
