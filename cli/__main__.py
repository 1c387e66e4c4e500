"""``python -m nestdsl.cli COMMAND ...``: the command line without the console script.

This is what torchrun starts: ``torchrun --nproc-per-node N -m nestdsl.cli train SPEC ...``
runs N copies of `nestdsl train`, each reading its rank from the environment torchrun sets.
"""

from nestdsl.cli.entry import main

main()
