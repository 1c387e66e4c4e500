"""`nestdsl compile`: per-stage table, --emit ir/json/export, exit codes (runner, subprocess)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nestdsl.cli.app import app
from nestdsl.cost import stage_costs
from nestdsl.glossary import human
from nestdsl.ir import build_ir
from nestdsl.load import load

GOLDEN_CLI = Path(__file__).resolve().parent / "golden" / "cli"
TINY = GOLDEN_CLI / "tiny.nest"
BAD = "nest 1\ninput shape=(3, 8, 8)\nstem conv channels=8\nblock s1 basik count=1 channels=8\n"

runner = CliRunner()


def entry_point() -> str:
    """The installed `nestdsl` script next to this interpreter (or on PATH)."""
    local = Path(sys.executable).parent / "nestdsl"
    found = str(local) if local.exists() else shutil.which("nestdsl")
    if found is None:
        pytest.skip("the `nestdsl` entry point is not installed")
    return found


def test_human() -> None:
    cases = {0: "0", 999: "999", 1000: "1.00K", 1234: "1.23K", 35_700_000: "35.7M"}
    cases |= {999_999: "1.00M", 4_089_184_256: "4.09G", 123_456: "123K"}
    for count, text in cases.items():
        assert human(count) == text


def test_table() -> None:
    result = runner.invoke(app, ["compile", str(TINY)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "network tiny: input 3×8×8, 10 classes, 3 stages" in out
    for column in ("stage", "size", "width", "depth", "params", "anytime params", "MACs"):
        assert column in out
    costs = stage_costs(build_ir(load(TINY)))
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[:4] for r in rows] == [
        ["1", "w1", "×1", "×1"],
        ["2", "w2", "×2", "×1"],
        ["3", "w4", "×4", "×1"],
    ]
    for row, cost in zip(rows, costs, strict=True):
        assert row[4:] == [
            human(cost.params),
            human(cost.anytime_params),
            human(cost.flops),
            human(cost.incremental_flops),
        ]
    assert "MACs" in out
    assert result.stdout == runner.invoke(app, ["compile", str(TINY)]).stdout  # deterministic


def test_emit_ir_golden(golden) -> None:
    result = runner.invoke(app, ["compile", str(TINY), "--emit", "ir"])
    assert result.exit_code == 0
    golden("cli/tiny_ir.txt", result.stdout)


def test_emit_json() -> None:
    result = runner.invoke(app, ["compile", str(TINY), "--emit", "json"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["network"] == "tiny" and document["input_shape"] == [3, 8, 8]
    assert [s["label"] for s in document["stages"]] == ["w1", "w2", "w4"]
    assert [s["width"] for s in document["stages"]] == [1, 2, 4]
    costs = stage_costs(build_ir(load(TINY)))
    assert [s["params"] for s in document["stages"]] == [c.params for c in costs]
    assert set(document["stages"][0]) == {
        "stage",
        "label",
        "width",
        "depth",
        "params",
        "anytime_params",
        "macs",
        "incremental_macs",
    }


def test_output_file(tmp_path: Path) -> None:
    out = tmp_path / "ir.txt"
    result = runner.invoke(app, ["compile", str(TINY), "--emit", "ir", "-o", str(out)])
    assert result.exit_code == 0
    assert result.stdout == ""
    assert out.read_text(encoding="utf-8").startswith("ir tiny\n")


def test_depth_relative_sizes(tmp_path: Path) -> None:
    spec = tmp_path / "d.nest"
    spec.write_text(
        "nest 1\ninput shape=(3, 8, 8)\nstem conv channels=8\n"
        "block s1 sparse_resnet count=4 channels=8\nhead classes=10\nschedule (width + depth) * 2\n"
    )
    document = json.loads(runner.invoke(app, ["compile", str(spec), "-e", "json"]).stdout)
    assert [(s["width"], s["depth"]) for s in document["stages"]] == [(1, 1), (2, 2), (4, 4)]


def test_export(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    out = tmp_path / "d2.pt2"
    torch.manual_seed(0)  # freshly initialised weights: same seed, same network below
    result = runner.invoke(
        app, ["compile", str(TINY), "--emit", "export", "-o", str(out), "--stage", "2"]
    )
    assert result.exit_code == 0, result.output
    from nestdsl.compiler import compile as compile_net

    torch.manual_seed(0)
    net = compile_net(build_ir(load(TINY))).eval()
    program = torch.export.load(str(out))
    x = torch.randn(3, 3, 8, 8)  # another batch size than the example: the batch is dynamic
    expected = net.subnetwork(2).eval()(x)
    assert torch.allclose(program.module()(x), expected, atol=1e-5)


def test_export_with_trained_weights(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from nestdsl.compiler import compile as compile_net

    net = compile_net(build_ir(load(TINY))).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)  # weights a fresh network cannot have by chance
    run = tmp_path / "run"
    run.mkdir()
    torch.save(net.state_dict(), run / "final.pt")
    out = tmp_path / "d3.pt2"
    args = ["compile", str(TINY), "-e", "export", "-o", str(out), "--weights", str(run)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(torch.export.load(str(out)).module()(x), net(x)[-1], atol=1e-5)


def test_export_with_weights_of_another_spec(tmp_path: Path, specs_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from nestdsl.compiler import compile as compile_net

    other = compile_net(build_ir(load(specs_dir / "digits_width.nest")))
    torch.save(other.state_dict(), tmp_path / "final.pt")
    args = [
        "compile",
        str(TINY),
        "-e",
        "export",
        "-o",
        str(tmp_path / "x.pt2"),
        "-w",
        str(tmp_path / "final.pt"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "error[E904]" in result.stderr and "Traceback" not in result.output
    assert runner.invoke(app, ["compile", str(TINY), "-w", str(tmp_path)]).exit_code == 2


def test_export_usage_errors(tmp_path: Path) -> None:
    assert runner.invoke(app, ["compile", str(TINY), "--emit", "export"]).exit_code == 2
    bad_stage = ["compile", str(TINY), "-e", "export", "-o", str(tmp_path / "x.pt2"), "-k", "9"]
    assert runner.invoke(app, bad_stage).exit_code == 2
    assert runner.invoke(app, ["compile", str(TINY), "--stage", "1"]).exit_code == 2


def test_bad_spec(tmp_path: Path) -> None:
    spec = tmp_path / "bad.nest"
    spec.write_text(BAD)
    result = runner.invoke(app, ["compile", str(spec)])
    assert result.exit_code == 1
    assert f"{spec}:4:" in result.stderr and "basik" in result.stderr
    assert "Traceback" not in result.output


def test_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["compile", str(tmp_path / "nope.nest")])
    assert result.exit_code == 2


def test_subprocess(tmp_path: Path) -> None:
    exe = entry_point()
    ok = subprocess.run([exe, "compile", str(TINY)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "network tiny" in ok.stdout and "w4" in ok.stdout and ok.stderr == ""
    ir = subprocess.run(
        [exe, "compile", str(TINY), "--emit", "ir"], capture_output=True, text=True, check=False
    )
    assert ir.stdout == (GOLDEN_CLI / "tiny_ir.txt").read_text(encoding="utf-8")
    spec = tmp_path / "bad.nest"
    spec.write_text(BAD)
    bad = subprocess.run([exe, "compile", str(spec)], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert f"{spec}:4:" in bad.stderr and "Traceback" not in bad.stderr and bad.stdout == ""
    missing = subprocess.run(
        [exe, "compile", str(tmp_path / "nope.nest")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_oracle_emit_spec_writes_a_plain_spec_and_compares_costs(tmp_path: Path) -> None:
    from nestdsl.oracle import oracle_source

    spec = Path(__file__).resolve().parent.parent / "specs" / "digits_width.nest"
    out = tmp_path / "oracle.nest"
    result = runner.invoke(
        app, ["compile", str(spec), "--oracle", "2", "--emit", "spec", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_text() == oracle_source(load(spec), 2)
    assert "oracle of stage 2 (w2): 19,706 params" in result.stderr
    assert "nested D_2: 14,970 params" in result.stderr
    table = runner.invoke(app, ["compile", str(out)])  # the written spec compiles as is
    assert table.exit_code == 0 and "1 stage" in table.stdout


def test_oracle_stage_out_of_range_is_a_user_error() -> None:
    result = runner.invoke(app, ["compile", str(TINY), "--oracle", "9", "--emit", "spec"])
    assert result.exit_code == 1 and "T005" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "nodir/table.txt"], "the folder `nodir` does not exist"),
        (["--emit", "json", "-o", "nodir/x.json"], "the folder `nodir` does not exist"),
        (["-o", "/proc/table.txt"], "cannot write `/proc/table.txt`"),
        (["--emit", "export", "-o", "/proc/x.pt2"], "cannot write `/proc/x.pt2`"),
        (["-o", "."], "it is a folder"),
    ],
)
def test_unwritable_output_is_a_diagnostic(args, message, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["compile", str(TINY), *args])
    assert result.exit_code == 1, result.output
    assert "error[E905]" in result.stderr and message in result.stderr
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


def test_spec_saved_by_notepad_loads(tmp_path: Path) -> None:
    """UTF-8 with a byte-order mark and CRLF line ends (Windows Notepad)."""
    spec = tmp_path / "notepad.nest"
    text = TINY.read_text(encoding="utf-8").replace("\n", "\r\n")
    spec.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    result = runner.invoke(app, ["compile", str(spec)])
    assert result.exit_code == 0, result.output
    assert result.stdout == runner.invoke(app, ["compile", str(TINY)]).stdout
