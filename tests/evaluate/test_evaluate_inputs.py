"""`nestdsl run`'s inputs (nestdsl/evaluate/inputs.py): arrays, images, folders, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nestdsl.diagnostics import NestError
from nestdsl.evaluate.inputs import Preprocessing, read_inputs

GREY = Preprocessing((1, 8, 8), (0.5,), (0.25,))


def test_arrays_of_every_layout_are_resized_and_normalized(tmp_path) -> None:
    for shape in [(4, 4), (3, 4, 4), (3, 1, 4, 4)]:
        path = tmp_path / f"a{len(shape)}.npy"
        np.save(path, np.full(shape, 255, dtype=np.uint8))
        inputs = read_inputs(path, GREY)
        count = 1 if len(shape) == 2 else 3
        assert inputs.images.shape == (count, 1, 8, 8)
        assert torch.allclose(inputs.images, torch.full_like(inputs.images, 2.0))  # (1-.5)/.25
        assert inputs.names[0] == f"a{len(shape)}.npy[0]"
    colour = Preprocessing((3, 8, 8), (0.0,) * 3, (1.0,) * 3)
    np.save(tmp_path / "f.npy", np.full((2, 8, 8), 0.5, dtype=np.float32))
    assert read_inputs(tmp_path / "f.npy", colour).images.shape == (2, 3, 8, 8)


def test_images_and_folders(tmp_path) -> None:
    from PIL import Image

    for name, value in [("b.png", 0), ("a.png", 255)]:
        Image.fromarray(np.full((16, 16), value, dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    folder = read_inputs(tmp_path, GREY)
    assert folder.names == ("a.png", "b.png") and folder.images.shape == (2, 1, 8, 8)
    assert torch.allclose(folder.images[0], torch.full((1, 8, 8), 2.0))
    single = read_inputs(tmp_path / "b.png", GREY)
    assert torch.allclose(single.images, torch.full((1, 1, 8, 8), -2.0))


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("x.txt", b"hello", "E912"),
        ("bad.npy", b"not numpy", "E912"),
        ("wide.npy", None, "E913"),
    ],
)
def test_unusable_inputs_are_user_errors(tmp_path, name, content, code) -> None:
    path = tmp_path / name
    if content is None:
        np.save(path, np.zeros((1, 2, 4, 4)))  # two channels for a grey network
    else:
        path.write_bytes(content)
    with pytest.raises(NestError, match=code):
        read_inputs(path, GREY)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NestError, match="E912"):
        read_inputs(empty, GREY)
