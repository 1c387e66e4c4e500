"""``python -m nestdsl.train SPEC ...``: the `train` command alone, for torchrun.

``torchrun --nproc-per-node N -m nestdsl.train SPEC --epochs 10 --out runs/x`` starts N copies
of this module; each reads its rank from the environment that torchrun sets.
"""

from __future__ import annotations

import typer

from nestdsl.cli import train_cmd


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    train_cmd.register(app)
    app()


if __name__ == "__main__":
    main()
