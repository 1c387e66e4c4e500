"""Source-string dispatch and its errors."""

from __future__ import annotations

import pytest

import nestdsl.data as data
from nestdsl.data import SOURCES, build_datasets
from nestdsl.diagnostics import NestError


def test_public_api():
    assert set(data.__all__) >= {"DataSplit", "build_datasets"}
    assert set(SOURCES) == {"digits", "synthetic", "cifar10", "cifar100", "imagefolder"}


def test_unknown_source_suggests_and_lists():
    with pytest.raises(NestError) as err:
        build_datasets("digts", (1, 8, 8))
    diag = err.value.diagnostics[0]
    assert diag.code == "D001" and "`digts`" in diag.message
    assert diag.help is not None
    assert "did you mean `digits`?" in diag.help
    assert "cifar10:PATH" in diag.help and "imagefolder:PATH" in diag.help


def test_name_is_case_insensitive():
    assert build_datasets("Synthetic:8", (1, 2, 2)).name == "synthetic"


@pytest.mark.parametrize("shape", [(0, 8, 8), (1, 8), (1, -2, 8)])
def test_bad_shape(shape):
    with pytest.raises(NestError) as err:
        build_datasets("synthetic", shape)
    assert err.value.diagnostics[0].code == "D003"


@pytest.mark.parametrize("source", ["cifar10", "cifar100", "imagefolder"])
def test_path_sources_need_a_path(source):
    with pytest.raises(NestError) as err:
        build_datasets(source, (3, 32, 32))
    assert err.value.diagnostics[0].code == "D002"
