"""Tensor transforms: shapes, flip correctness, crop bounds, determinism under a seed."""

from __future__ import annotations

import pytest
import torch

from nestdsl.data import transforms as T


def _image(c: int = 3, h: int = 6, w: int = 8) -> torch.Tensor:
    return torch.arange(c * h * w, dtype=torch.float32).reshape(c, h, w)


def test_hflip_mirrors_last_axis():
    img = _image()
    flipped = T.hflip(img)
    assert torch.equal(flipped[:, :, 0], img[:, :, -1])
    assert torch.equal(T.hflip(flipped), img)


def test_random_hflip_extremes():
    img = _image()
    assert torch.equal(T.random_hflip(img, p=0.0), img)
    assert torch.equal(T.random_hflip(img, p=1.0), T.hflip(img))


def test_pad_random_crop_is_a_shift_of_the_image():
    img = _image(1, 5, 5) + 1  # no zeros inside, so padding is recognisable
    for seed in range(20):
        out = T.pad_random_crop(img, 2, generator=torch.Generator().manual_seed(seed))
        assert out.shape == img.shape
        inside = out[out != 0]
        # every kept pixel is one of the image's pixels, and at least (5-2)^2 of them remain
        assert inside.numel() >= 9
        assert set(inside.tolist()) <= set(img.flatten().tolist())


def test_pad_random_crop_fill_and_no_padding():
    img = torch.ones(2, 4, 4)
    assert torch.equal(T.pad_random_crop(img, 0), img)
    outs = [T.pad_random_crop(img, 3, fill=(-1.0, -2.0)) for _ in range(30)]
    assert any((o[0] == -1).any() for o in outs)
    for o in outs:
        assert set(o[0].unique().tolist()) <= {1.0, -1.0}
        assert set(o[1].unique().tolist()) <= {1.0, -2.0}


def test_center_crop_bounds():
    img = _image(1, 6, 8)
    out = T.center_crop(img, (2, 4))
    assert torch.equal(out, img[:, 2:4, 2:6])
    with pytest.raises(ValueError):
        T.center_crop(img, (7, 4))


def test_resize_shapes_and_identity():
    img = torch.rand(3, 8, 8)
    assert T.resize(img, (16, 12)).shape == (3, 16, 12)
    assert T.resize(img.unsqueeze(0), (4, 4)).shape == (1, 3, 4, 4)
    assert torch.equal(T.resize(img, (8, 8)), img)
    const = torch.full((1, 10, 10), 0.25)
    assert torch.allclose(T.resize(const, (3, 7)), torch.full((1, 3, 7), 0.25))


def test_resize_shorter_covers_target():
    out = T.resize_shorter(torch.rand(3, 100, 200), (56, 56))
    assert out.shape[-2] == 64 and out.shape[-1] >= 64
    assert T.center_crop(out, (56, 56)).shape == (3, 56, 56)


@pytest.mark.parametrize("shape", [(3, 50, 80), (1, 80, 20), (3, 9, 9)])
def test_random_resized_crop_shape(shape):
    img = torch.rand(*shape)
    for seed in range(10):
        out = T.random_resized_crop(img, (12, 16), generator=torch.Generator().manual_seed(seed))
        assert out.shape == (shape[0], 12, 16)


def test_random_resized_crop_fallback_keeps_content():
    # An impossible scale forces the fallback: a central crop of a constant image stays constant.
    img = torch.full((1, 10, 40), 0.5)
    out = T.random_resized_crop(img, (5, 5), scale=(2.0, 3.0))
    assert torch.allclose(out, torch.full((1, 5, 5), 0.5))


def test_augmentation_is_deterministic_under_a_seed():
    img = torch.rand(3, 20, 20)

    def run() -> list[torch.Tensor]:
        torch.manual_seed(123)
        return [
            T.random_hflip(T.pad_random_crop(img, 4)),
            T.random_resized_crop(img, (8, 8)),
        ]

    first, second = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(
        T.random_resized_crop(img, (8, 8), generator=g1),
        T.random_resized_crop(img, (8, 8), generator=g2),
    )


def test_normalize_per_channel():
    img = torch.ones(2, 3, 3)
    out = T.normalize(img, (0.5, 1.0), (0.5, 2.0))
    assert torch.allclose(out[0], torch.ones(3, 3))
    assert torch.allclose(out[1], torch.zeros(3, 3))
    assert T.normalize(img.unsqueeze(0), (0.5, 1.0), (0.5, 2.0)).shape == (1, 2, 3, 3)
