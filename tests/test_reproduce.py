"""The reproduction driver: its grid, resuming, and the report it renders from records."""

import json
import pathlib
import sys

import pytest

from keras_local.config import load_config
from keras_local.methods import method_option_names

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
from reproduction import claims, grid, power_report, report  # noqa: E402


def fake_record(cell, accuracy, memory=100.0, step=0.1):
    return {
        "cell": cell,
        "dataset_label": "CIFAR-10 (JPEG q75)",
        "overrides": [],
        "versions": {},
        "seed": cell["seed"],
        "history": [],
        "test_accuracy": accuracy,
        "block_accuracies": {},
        "num_blocks": 4 if cell["num_blocks"] == "auto" else cell["num_blocks"],
        "peak_memory_mib": memory + 200.0,
        "step_memory_mib": memory,
        "step_seconds": step,
        "seconds": 1.0,
    }


def test_the_grid_holds_only_cells_the_methods_accept_and_every_cell_is_a_valid_config():
    cells = grid.grid("cifar10")
    ids = {cell["id"] for cell in cells}
    assert len(ids) == len(cells)
    assert "cifar10-resnet32-backlink_l1-k16-s0" in ids and "cifar10-resnet20-bwbpf-k4-s1" in ids
    assert "cifar10-resnet32-backlink_l2-k16-s0" not in ids  # 16 one-unit blocks: no tail of length 2
    assert {cell["split"] for cell in cells if cell["variant"] == "infopro"} == {"even", "infopro"}
    for cell in cells[:12]:
        config = load_config(None, grid.overrides(cell, grid.BUDGETS["cifar10"]), method_option_names())
        assert config["method"] == cell["method"] and config["callbacks"]["memory_monitor"] is True
        assert config["block_order"] == (
            "together" if cell["method"] in ("bp", "associated") or cell["variant"] == "bwbpf_ds" else "sequential"
        )
    by_id = {cell["id"]: cell for cell in cells}
    adam = load_config(
        None,
        grid.overrides(by_id["cifar10-resnet20-associated_adam-kauto-s0"], grid.BUDGETS["cifar10"]),
        method_option_names(),
    )
    grid_budget = load_config(
        None,
        grid.overrides(by_id["cifar10-resnet20-associated-kauto-s0"], grid.BUDGETS["cifar10"]),
        method_option_names(),
    )
    assert (adam["optimizer"], adam["learning_rate"], adam["batch_size"]) == ("adam", 1e-3, 32)  # the departure
    assert (grid_budget["optimizer"], grid_budget["learning_rate"]) == ("sgd", 0.1)
    assert adam["epochs"] == grid_budget["epochs"] and adam["train_examples"] == grid_budget["train_examples"]
    with pytest.raises(ValueError, match="Unknown grid 'imagenet'"):
        grid.grid("imagenet")


def test_a_resumed_grid_runs_only_the_cells_not_recorded(tmp_path):
    cells = grid.grid("cifar10")[:5]
    ran = []

    def runner(cell, records):
        ran.append(cell["id"])
        record = fake_record(cell, 0.5)
        grid.record_path(cell, records).write_text(json.dumps(record))
        return record

    tmp_path.joinpath("records").mkdir()
    records = tmp_path / "records"
    grid.record_path(cells[1], records).write_text(json.dumps(fake_record(cells[1], 0.6)))
    grid.run_grid(cells, records, runner=runner, log=lambda line: None)
    assert ran == [cells[0]["id"]] + [cell["id"] for cell in cells[2:]]
    ran.clear()
    grid.run_grid(cells, records, runner=runner, log=lambda line: None)
    assert ran == []  # everything recorded: nothing runs again


def test_the_report_renders_tables_plots_and_findings_from_records(tmp_path):
    cells = {cell["id"]: cell for cell in grid.grid("cifar10")}
    accuracies = {
        "cifar10-resnet20-bp-k1-s0": 0.80,
        "cifar10-resnet20-bp-k1-s1": 0.82,
        "cifar10-resnet20-gll_linear-k4-s0": 0.70,
        "cifar10-resnet20-gll_linear-k4-s1": 0.72,
        "cifar10-resnet20-backlink_l1-k4-s0": 0.74,
        "cifar10-resnet20-bwbpf-k4-s0": 0.71,
        "cifar10-resnet20-gll_linear-k8-s0": 0.60,
        "cifar10-resnet20-backlink_l1-k8-s0": 0.65,
    }
    records = [
        fake_record(cells[name], accuracy, memory=50.0 if "bp" not in name else 100.0)
        for name, accuracy in accuracies.items()
    ]
    path = report.render_report(records, tmp_path)
    text = path.read_text()
    assert "| BP | 19.00 ± 1.41 (n=2) | 19.00 ± 1.41 (n=2) |" in text  # bp's own row, the same at every K
    assert "| GLL (linear) | 29.00 ± 1.41 (n=2) | 40.00 (n=1) |" in text
    # Findings compare seed 0 (bp's two seeds give 20% and 18%; the table shows their mean).
    assert "the best local method is BackLink l=1 at 26.00% error, 6.00 points above BP's 20.00%" in text
    assert "BWBPF (paper semantics) does not beat BP here (29.00% vs 20.00%)" in text
    assert "BackLink (l = 1) − GLL at the largest K = 8: -5.00 points" in text and "reproduced in trend" in text
    for name in ("cifar10_resnet20_error_vs_k.png", "cifar10_tradeoff.png"):
        assert (tmp_path / name).stat().st_size > 0 and f"]({name})" in text
    assert "No runs recorded" in report.render_report([], tmp_path / "empty").read_text()


def test_the_papers_claims_are_checked_against_the_recorded_errors(tmp_path):
    cells = {cell["id"]: cell for cell in grid.grid("cifar10")}
    accuracies = {
        "cifar10-resnet20-bp-k1-s0": 0.81,
        "cifar10-resnet20-gll_linear-k4-s0": 0.71,
        "cifar10-resnet20-gll_linear-k8-s0": 0.60,
        "cifar10-resnet20-backlink_l1-k4-s0": 0.74,
        "cifar10-resnet20-backlink_l1-k8-s0": 0.65,
        "cifar10-resnet20-backlink_l2-k4-s0": 0.73,  # above l = 1: the l-claim is contradicted
        "cifar10-resnet20-bwbpf-k4-s0": 0.70,
        "cifar10-resnet20-predsim-k4-s0": 0.50,
        "cifar10-resnet20-associated_adam-kauto-s0": 0.80,
    }
    records = [
        fake_record(cells[name], accuracy, memory=100.0 if "bp" in name else 40.0, step=0.2 if "bp" in name else 0.3)
        for name, accuracy in accuracies.items()
    ]
    errors = report._error_cells(records)
    verdicts = {
        statement: (evidence, holds, beyond_noise)
        for _, statement, evidence, holds, beyond_noise in claims.check_claims(errors, "cifar10", "resnet20")
    }
    # Beyond noise: a gap over twice its binomial sigma on 10,000 test images (3 points at 29% and 26%
    # error: sigma = 0.63; 1 point at 26% and 27%: sigma = 0.62, so 1.00 is within noise).
    assert verdicts["GLL's error grows with K"] == ("29.00 (K=4) → 40.00 (K=8)", True, True)
    assert verdicts["BackLink (l = 1) has a lower error than GLL at every K (linear heads)"] == (
        "K=4: -3.00, K=8: -5.00",
        True,
        True,
    )
    # The gain grows by 2 points; its sigma sums four error rates' variances (0.93): 2 > 1.86.
    assert verdicts["the gain of BackLink (l = 1) over GLL grows with K"] == ("+3.00 (K=4) → +5.00 (K=8)", True, True)
    assert verdicts["a longer propagation lowers the error further (l = 2 below l = 1)"] == ("K=4: +1.00", False, False)
    assert verdicts["BWBPF has a lower error than BP"] == ("K=4: +11.00", False, True)
    assert verdicts["PredSim has a higher error than BP"][1:] == (True, True)
    assert verdicts["Associated Learning (with Adam, as its reference) is comparable to BP (within 2 points)"] == (
        "K=4: +1.00",
        True,
        True,
    )
    assert verdicts["InfoPro has a lower error than GLL with a conv head at every K"] == ("–", None, None)
    assert claims.sigma(26.0, 27.0) == pytest.approx(100 * ((0.26 * 0.74 + 0.27 * 0.73) / 10_000) ** 0.5)
    text = report.render_report(records, tmp_path).read_text()
    assert "| BWBPF table | BWBPF has a lower error than BP | K=4: +11.00 | **contradicted here** |" in text
    assert "| K=4: +1.00 | contradicted, within test-set noise |" in text
    assert "| GLL (linear) | 8 | 40 | 60% | 240 | 1.50 |" in text  # the cost table: memory saved, step-time ratio
    assert "| BP | 1 | 100 | 0% | 300 | 1.00 |" in text
    # A grid checks only the claims its declared cells can test: Tiny-ImageNet has one K and four methods.
    tiny = [statement for _, statement, *_ in claims.check_claims({}, "tiny_imagenet", "resnet20")]
    assert tiny == [
        "BackLink (l = 1) has a lower error than GLL at every K (linear heads)",
        "BWBPF has a lower error than BP",
    ]
    tiny_cells = {cell["variant"]: cell for cell in grid.grid("tiny_imagenet")}
    text = report.render_report(
        [fake_record(tiny_cells[v], 0.1) for v in ("bp", "gll_linear")], tmp_path / "tiny"
    ).read_text()
    assert "1 epoch, batch" in text and "GLL's error grows with K" not in text
    assert "error_vs_k" not in text  # one K: no error-vs-K plot


def test_a_cell_starts_from_scratch_whatever_an_earlier_run_left_in_its_folder(tmp_path, monkeypatch):
    budget = {
        "label": "the embedded sample",
        "dataset": "cifar10_sample",
        "train_examples": 64,
        "test_examples": 64,
        "epochs": 1,
        "batch_size": 32,
        "learning_rate": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.0,
        "lr_schedule": "cosine",
    }
    monkeypatch.setitem(grid.BUDGETS, "cifar10", budget)
    # The embedded sample needs no data root; the shared one may be absent from a fresh checkout's parent.
    monkeypatch.setattr(grid, "DATA_DIR", str(tmp_path))
    cell = grid._cell("cifar10", "mlp", "gll_linear", 2, 0)
    stale = tmp_path / "runs" / cell["id"]
    (stale / "backup").mkdir(parents=True)
    (stale / "backup" / "training_metadata.json").write_text("{}")
    (stale / "history.csv").write_text("epoch,old_column\n0,1\n1,2\n")  # an older run's rows, other columns
    record = grid.run_cell(cell, tmp_path / "records", runs=str(tmp_path / "runs"))
    assert [row["epoch"] for row in record["history"]] == [0.0] and "old_column" not in record["history"][0]
    assert record["step_memory_mib"] > 0 and len(record["load_average"]) == 3
    assert (
        json.loads(grid.record_path(cell, tmp_path / "records").read_text())["test_accuracy"] == record["test_accuracy"]
    )


def test_cells_are_keyed_by_the_k_asked_for_and_costs_compare_like_batches(tmp_path):
    cells = {cell["id"]: cell for cell in grid.grid("cifar10")}
    bp = fake_record(cells["cifar10-resnet20-bp-k1-s0"], 0.8, memory=100.0, step=0.4)
    bwbpf = fake_record(cells["cifar10-resnet20-bwbpf-k4-s0"], 0.7, memory=50.0, step=0.4)
    bwbpf["num_blocks"] = 5  # BWBPF's output layer is a block of its own
    associated = fake_record(cells["cifar10-resnet20-associated_adam-kauto-s0"], 0.6, memory=20.0, step=0.2)
    assert grid.grid_k(bwbpf) == 4 and grid.grid_k(associated) == 4
    rows = {row[0]: row for row in report.cost_table([bp, bwbpf, associated], "resnet20")}
    assert rows["bwbpf"] == ("bwbpf", 4, 50.0, 50.0, 250.0, 1.0)
    # Associated runs at batch 32: its memory is not comparable, its time is compared per example.
    assert rows["associated_adam"][3] is None and rows["associated_adam"][5] == pytest.approx(2.0)
    text = report.render_report([bp, bwbpf, associated], tmp_path).read_text()
    assert "| BWBPF | – | 30.00 (n=1) |" not in text and "| BWBPF | 30.00 (n=1) |" in text


def test_the_power_report_uses_seed_noise_and_marks_unconverged_cells(tmp_path):
    cells = {cell["id"]: cell for cell in grid.grid("power")}
    assert {cell["recipe"] for cell in cells.values()} == {"shared", "reference"}
    assert all(f"-s{seed}" in cell_id for cell_id in cells for seed in [cells[cell_id]["seed"]])
    falling = [{"loss": 2.0 - 0.1 * epoch} for epoch in range(10)]  # still -10% in the last epoch
    flat = [{"loss": 1.0} for _ in range(10)]

    def record(cell_id, accuracy, history=flat):
        return {**fake_record(cells[cell_id], accuracy), "history": history}

    records = []
    for seed, (bp, gll2, gll4, link2, link4) in enumerate(
        [(0.520, 0.50, 0.45, 0.52, 0.47), (0.515, 0.49, 0.44, 0.51, 0.47), (0.525, 0.51, 0.45, 0.52, 0.48)]
    ):
        records += [
            record(f"power-resnet8-bp-k1-s{seed}", bp),
            record(f"power-resnet8-gll_linear-k2-s{seed}", gll2),
            record(f"power-resnet8-gll_linear-k4-s{seed}", gll4, falling if seed == 1 else flat),
            record(f"power-resnet8-backlink_l1-k2-s{seed}", link2),
            record(f"power-resnet8-backlink_l1-k4-s{seed}", link4),
        ]
    records.append(record("power-resnet8-bwbpf-k4-s0", 0.6))  # one seed: decides nothing
    spread = power_report.seed_spread(records)
    assert spread[1] == pytest.approx(0.5) and spread[2] == pytest.approx(1.0)  # 48.0, 48.5, 47.5
    verdicts = {
        statement: (holds, beyond) for _, statement, _, holds, beyond in power_report.power_claims(records, "shared")
    }
    # GLL: 50.0 → 55.33 error, a 5.3-point rise against seed noise of ~0.5: beyond noise.
    assert verdicts["GLL's error grows with K"] == (True, True)
    # BackLink − GLL: K=2 -1.67 (σ = sqrt(0.33²/... ) small), K=4 -2.67: both beyond noise.
    assert verdicts["BackLink (l = 1) has a lower error than GLL at every K (linear heads)"] == (True, True)
    assert verdicts["BWBPF has a lower error than BP"] == (None, None)  # one seed only
    estimate = claims.Estimate([50.0, 51.0, 49.0])
    assert estimate == pytest.approx(50.0) and estimate.variance == pytest.approx(1.0 / 3)
    assert claims.sigma(estimate, estimate) == pytest.approx((2 / 3) ** 0.5)
    text = power_report.render_power_report(records, tmp_path).read_text()
    assert "standard deviation 0.50 points, range 1.00 points" in text
    assert "| GLL (linear) | 50.00 ± 1.00 (n=3) | 55.33 ± 0.58 (n=3) † |" in text
    assert power_report.not_converged(record("power-resnet8-bp-k1-s0", 0.5, falling))
    assert not power_report.not_converged(record("power-resnet8-bp-k1-s0", 0.5, flat))


def test_convergence_judges_the_epochs_before_the_rate_cut_and_knows_a_cell_at_chance(tmp_path):
    cells = {cell["id"]: cell for cell in grid.grid("power")}
    piecewise = [
        'lr_schedule="piecewise"',
        "lr_boundaries=[0.4, 0.6, 0.8, 0.9]",
        "epochs=10",
        "lr_multipliers=[1.0, 0.1, 0.01, 0.001, 0.0005]",
    ]
    # Falling 10 % an epoch until the cut at 40 %, then frozen: the frozen tail must not pass for convergence.
    frozen = [{"loss": 2.0 * 0.9 ** min(epoch, 3), "accuracy": 0.5} for epoch in range(10)]
    record = {**fake_record(cells["power-resnet8-bp-k1-s0"], 0.5), "history": frozen, "overrides": piecewise}
    assert power_report.convergence(record) == "still learning"
    assert power_report.convergence({**record, "overrides": []}) is None  # judged on its last epochs: flat
    # A collapsed loss at chance accuracy (Associated Learning's codes) has not converged either.
    collapsed = [{"loss": 0.0, "accuracy": 0.101} for _ in range(10)]
    assert power_report.convergence({**record, "history": collapsed}) == "at chance"
    # The claim that reads such cells is not decided by them, and says which optimizer its cell used.
    records = []
    for seed in range(3):
        records += [
            {
                **fake_record(cells[f"power-resnet8-bp-k1-s{seed}"], 0.5 + 0.01 * seed),
                "history": [{"loss": 1.0, "accuracy": 0.5}],
            },
            {**fake_record(cells[f"power-resnet8-associated-kauto-s{seed}"], 0.1), "history": collapsed},
        ]
    table = "\n".join(power_report._power_claims_table(records, "shared"))
    assert (
        "Associated Learning (with the shared SGD recipe) is comparable to BP (within 2 points) | K=4: +41.00"
        " | undecided: a cell it reads is at chance" in table
    )


def test_the_2024_grid_decides_a_claim_on_gaps_paired_by_seed():
    import local_2024

    # The rule is 1 point below its base on every seed while the seeds themselves spread 10 points:
    # unpaired the gap would drown in that spread, paired it holds.
    base = {seed: 60.0 + 5 * seed for seed in range(3)}
    errors = {"dgl": base, "dgl+man": {seed: error - 1.0 + 0.1 * seed for seed, error in base.items()}}
    assert local_2024.verdict(errors, "dgl+man", "dgl").startswith("dgl+man below dgl: holds (gap +0.90")
    assert "fails" in local_2024.verdict(errors, "dgl", "dgl+man")
    mixed = {"dgl": base, "dgl+man": {0: 59.0, 1: 66.0, 2: 70.0}}
    assert "within seed noise" in local_2024.verdict(mixed, "dgl+man", "dgl")
    assert "undecided" in local_2024.verdict({"dgl": base, "dgl+man": {0: 50.0, 1: 50.0}}, "dgl+man", "dgl")


def test_the_associated_steps_section_compares_every_seed_at_the_last_step(tmp_path):
    def run(bp, associated, width=512):
        points = lambda last: [[1000, 0.1], [2000, last]]  # noqa: E731
        return {
            "command": "python benchmarks/associated_steps.py --steps 2000",
            "width": width,
            "batch_size": 32,
            "learning_rate": 1e-4,
            "results": {"bp": {"points": points(bp)}, "associated": {"points": points(associated)}},
            "bp_final_accuracy": bp,
            "associated_reaches_bp_at_step": None,
        }

    path = tmp_path / "associated_steps.json"
    path.write_text(json.dumps(run(0.44, 0.43)))
    assert power_report._associated_seeds_lines(path) == []  # one seed: nothing to compare
    (tmp_path / "associated_steps_seed1.json").write_text(json.dumps(run(0.40, 0.37)))
    (tmp_path / "associated_steps_seed2.json").write_text(json.dumps(run(0.42, 0.42)))
    text = "\n".join(power_report._associated_steps_section(path))
    assert "| 1 | 40.00 % | 37.00 % | +3.00 |" in text and "| mean | | | +1.33 ± 1.53 |" in text
    assert "within the claim's 2 points of BP on 2 of 3 seeds" in text
    (tmp_path / "associated_steps_seed3.json").write_text(json.dumps(run(0.40, 0.37, width=1024)))
    assert power_report._associated_seeds_lines(path) == []  # another protocol: not pooled
