"""Training reads CIFAR batch files from a local path (the real python format, tiny)."""

from __future__ import annotations

from pathlib import Path

from cifar_files import make_cifar10

from nestdsl.train import TrainConfig, train

SPEC = """nest 1
input shape=(3, 32, 32)
stem conv channels=8 stride=2
block s1 basic count=1 channels=8 stride=2
head classes=10
schedule width
"""


def test_trains_on_cifar10_batch_files(tmp_path: Path) -> None:
    folder = make_cifar10(tmp_path / "data", n=8)
    spec = tmp_path / "tiny.nest"
    spec.write_text(SPEC)
    config = TrainConfig(data=f"cifar10:{folder}", epochs=1, batch_size=8, device="cpu")
    result = train(str(spec), config, run_dir=tmp_path / "run", progress=False)
    assert result.finished and len(result.stages) == 2
    assert all(m.count == 8 for m in result.stages)  # the test_batch file is the validation set
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 1
