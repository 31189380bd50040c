"""The papers' comparisons, like for like, at CPU scale: a declared grid, one budget for all.

    python benchmarks/reproduce.py --grid cifar10                 # run what is not done yet, then the report
    python benchmarks/reproduce.py --grid cifar10 --only "resnet20-*-k4-s0"
    python benchmarks/reproduce.py --grid power                   # the protocol with power (3 seeds, 2 recipes)
    python benchmarks/reproduce.py --report                        # only re-render the reports

The `power` grid is the one `benchmarks/results/README.md` reports: resnet8 on
5,000 CIFAR-10 images trained to the end of its schedule, whose BP seeds
agree within a point, three seeds per cell, each method under one shared
recipe and under its own reference recipe (`Method.reference_recipe`,
compressed to the grid's epochs). The first grids (`cifar10`,
`tiny_imagenet`: 2 epochs of 20,000 images, BP seeds 6-13 points apart)
are reported apart, in `benchmarks/results/first_grid/README.md`.

Every cell of a grid (network × method variant × K × seed) trains through
`keras_local.train.train_and_evaluate` with the grid's budget (the same data,
epochs, optimizer and schedule for every method) and is recorded as
`benchmarks/results/reproduce/<cell>.json`: its config overrides, library
versions, seed, per-epoch per-block metrics, final `test_accuracy`, peak
memory of the training steps (working and absolute allocator peak,
`TF_CPU_ALLOCATOR_USE_BFC`), median step time and
wall time. A re-run skips the cells already recorded, so a half-done grid
resumes. The report (`benchmarks/results/README.md`, with PNGs beside it)
is regenerated from whatever is recorded.

Its parts are in `benchmarks/reproduction/`: `grid` (variants, budgets,
cells, running them), `claims` (the papers' claims with their noise),
`report` and `power_report`.

Local methods train with `block_order="sequential"` (the block order that frees
each block's activations before the next block runs, where the memory
saving of local training comes from); bp trains as one block.
"""

import argparse
import fnmatch
import sys

from reproduction.grid import BUDGETS, POWER_RECORDS, RECORDS, RESULTS, grid, load_records, record_path, run_grid
from reproduction.power_report import render_power_report
from reproduction.report import render_report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=sorted(BUDGETS), help="run this grid's pending cells")
    parser.add_argument("--only", help="glob on cell ids, e.g. 'cifar10-resnet20-*-k4-s0'")
    parser.add_argument("--skip", help="glob on cell ids to leave out, e.g. '*-associated-*-ref-*'")
    parser.add_argument("--list", action="store_true", help="list the grid's cells and whether each is done")
    parser.add_argument("--report", action="store_true", help="only render the report")
    args = parser.parse_args(argv)
    if args.grid and not args.report:
        cells = grid(args.grid)
        if args.only:
            cells = [cell for cell in cells if fnmatch.fnmatch(cell["id"], args.only)]
        if args.skip:
            cells = [cell for cell in cells if not fnmatch.fnmatch(cell["id"], args.skip)]
        records = POWER_RECORDS if args.grid == "power" else RECORDS
        if args.list:
            for cell in cells:
                print(f"{'done' if record_path(cell, records).exists() else 'todo'}  {cell['id']}")
            return 0
        run_grid(cells, records)
    print(f"wrote {render_report(load_records(), RESULTS / 'first_grid')}")
    print(f"wrote {render_power_report(load_records(POWER_RECORDS))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
