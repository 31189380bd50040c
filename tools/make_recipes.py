"""Writes the paper recipes under `recipes/` (bwbpf, backlink, associated, infopro, dgl, predsim, and the
2024 rules: man, hpff, auglocal).

One TOML file per cell of the papers' tables (network × dataset × K, and the
head for BackLink's Table 2). The training settings come from the methods'
`reference_recipe` (one source: `keras_local.methods`), the cell's own keys
(network, K, head, dataset, λ) and the table's numbers from here. Re-run after
changing either, and commit the generated files (`tests/test_recipes.py`
checks that they agree):

    python tools/make_recipes.py
"""

import pathlib
import textwrap

from keras_local.config import to_toml
from keras_local.methods import get_method

ROOT = pathlib.Path(__file__).resolve().parents[1] / "recipes"
GENERATED = ("bwbpf", "backlink", "associated", "infopro", "dgl", "predsim", "man", "hpff", "auglocal")
OFFLINE = {
    "cifar10": "--set dataset=cifar10_jpeg --set data_dir=../shared/data/tfds",
    "cifar100": "(no offline copy here)",
    "mnist": "(no offline copy here)",
    "tiny_imagenet": "--set data_dir=../shared/data/tfds",
}
TEST_SPLIT = {"cifar10": "test", "cifar100": "test", "mnist": "test", "tiny_imagenet": "validation"}


def cell(architecture, method, dataset, recipe, **keys):
    """A cell's config: `recipe`'s settings on `dataset` (unset method options
    left out: TOML has no null), then the cell's own `keys`."""
    settings = dict(recipe.for_dataset(dataset).settings)
    if "method_options" in settings:
        settings["method_options"] = {
            name: value for name, value in settings["method_options"].items() if value is not None
        }
    return {
        "architecture": architecture,
        "method": method,
        "dataset": dataset,
        "test_split": TEST_SPLIT[dataset],
        "eval_batch_size": 500,
        "seed": 0,
        **settings,
        **keys,
    }


def settings_line(recipe):
    return f"Settings: {recipe.source}."


# -- BWBPF (../shared/papers/bwbpf.md §3, Table 1, Figure 2) -------------------

BWBPF_TABLE1 = {  # error % of BWBPF, (CIFAR-10, Tiny-ImageNet), K = 4
    "vgg19": (6.52, 40.09),
    "resnet50": (4.85, 35.83),
    "resnet101": (4.53, 35.28),
    "resnet152": (4.48, 35.01),
}
# The reference code's K = 4 split: one block per stage (stem with stage 1).
STAGE_CUTS = {"resnet50": [4, 8, 14], "resnet101": [4, 8, 31], "resnet152": [4, 12, 48]}


def bwbpf_recipe(architecture, dataset, num_blocks, deep_supervision=False):
    cifar = dataset == "cifar10"
    error = BWBPF_TABLE1[architecture][0 if cifar else 1] if num_blocks == 4 else None
    recipe = get_method("bwbpf", deep_supervision=deep_supervision).reference_recipe(architecture)
    lines = [
        f"BWBPF, {architecture}, {'CIFAR-10' if cifar else 'Tiny-ImageNet'}, K = {num_blocks}"
        + (
            " — deep supervision (what the reference code trains)"
            if deep_supervision
            else " — paper semantics (cut at every block, output layer on the global loss only)"
        ),
        settings_line(recipe),
    ]
    if error is not None:
        lines.append(
            f"Paper Table 1: BWBPF error {error} % (numbers from the code, i.e. deep supervision; "
            "its baselines come from SEDONA's width-16 networks, see notes/methods.md §1.5)."
        )
    else:
        lines.append("Paper Figure 2 (error vs K) gives this cell only as a curve.")
    config = cell(architecture, "bwbpf", dataset, recipe, num_blocks=num_blocks)
    if deep_supervision and architecture in STAGE_CUTS:
        lines.append("The reference code's split: one block per ResNet stage.")
        del config["num_blocks"], config["split"]
        config["cuts"] = STAGE_CUTS[architecture]
    suffix = "_deep_supervision" if deep_supervision else ""
    return f"bwbpf/{architecture}_{dataset}_k{num_blocks}{suffix}.toml", lines, config


def bwbpf_recipes():
    for dataset in ("cifar10", "tiny_imagenet"):
        for architecture in BWBPF_TABLE1:
            yield bwbpf_recipe(architecture, dataset, 4)
            yield bwbpf_recipe(architecture, dataset, 4, deep_supervision=True)
        for architecture in ("resnet101", "resnet152"):
            for num_blocks in (8, 12, 16):
                yield bwbpf_recipe(architecture, dataset, num_blocks)


# -- BackLink (../shared/papers/backlink.md §3, Tables 1 and 2) -----------------

# architecture: (its options here, its number of units)
BACKLINK_NETWORKS = {
    "alexnet": ({}, 7),
    "vgg16": ({"hidden_units": [4096, 4096]}, 15),
    "resnet32": ({}, 16),
    "resnet110": ({}, 55),
}


def backlink_recipe(architecture, dataset, num_blocks, head):
    options, num_units = BACKLINK_NETWORKS[architecture]
    recipe = get_method("backlink").reference_recipe(architecture)
    table = "Table 2 (convolutional local classifiers)" if head == "conv" else "Table 1 (linear local classifiers)"
    lines = [
        f"BackLink, {architecture}, {dataset.upper().replace('CIFAR', 'CIFAR-')}, K = {num_blocks}, {head} heads: "
        f"a cell of the paper's {table}.",
        settings_line(recipe),
        "α is searched in {0, .25, .5, .75, 1} per network in the paper (values not given); 0.5 here.",
        "The table's rows l = 1..4: --set propagation_length=N (at most the shortest block but the last).",
    ]
    config = cell(
        architecture, "backlink", dataset, recipe, num_blocks=num_blocks, head=head, architecture_options=options
    )
    if num_blocks > num_units:  # the paper counts the classifier as a layer
        lines.append(
            f"{architecture} has {num_units} units plus the classifier, so K = {num_blocks} puts one "
            "unit in each block and the output layer alone in the last one."
        )
        del config["num_blocks"], config["split"]
        config["cuts"] = list(range(1, num_units + 1))
    return f"backlink/{architecture}_{dataset}_k{num_blocks}_{head}.toml", lines, config


def backlink_recipes():
    for num_blocks in (2, 4, 8):
        yield backlink_recipe("alexnet", "cifar10", num_blocks, "linear")
    for num_blocks in (2, 4, 8, 16):
        yield backlink_recipe("vgg16", "cifar10", num_blocks, "linear")
        for architecture in ("resnet32", "resnet110"):
            for dataset in ("cifar10", "cifar100"):
                yield backlink_recipe(architecture, dataset, num_blocks, "linear")
            yield backlink_recipe(architecture, "cifar10", num_blocks, "conv")


# -- Associated Learning (../shared/papers/associated_learning.md §5, Tables 2-4) --

# Test accuracy % (BP, AL) of the paper's tables.
AL_TABLES = {
    ("mnist", "mlp"): (98.5, 98.6),
    ("mnist", "cnn"): (99.4, 99.5),
    ("cifar10", "mlp"): (60.6, 62.8),
    ("cifar10", "cnn"): (85.2, 85.8),
    ("cifar10", "resnet20"): (91.2, 89.1),
    ("cifar10", "resnet32"): (92.0, 88.7),
    ("cifar10", "vgg"): (92.3, 92.6),
    ("cifar100", "mlp"): (26.5, 29.7),
    ("cifar100", "cnn"): (51.1, 52.2),
    ("cifar100", "resnet20"): (63.7, 61.0),
    ("cifar100", "resnet32"): (63.7, 59.0),
    ("cifar100", "vgg"): (65.8, 67.1),
}
TABLE_OF = {"mnist": "Table 2 (MNIST)", "cifar10": "Table 3 (CIFAR-10)", "cifar100": "Table 4 (CIFAR-100)"}


def al_setting(dataset, architecture):
    """(width n, the feature path's own hidden layers, number of components)."""
    if architecture == "mlp":
        hidden = [1024, 1024] if dataset == "mnist" else [3000, 3000]
        return hidden[0], hidden, 2
    width = {"cnn": 256, "vgg": 300}.get(architecture, 300) if dataset != "cifar100" else 500
    return width, [1024, 1024] if architecture == "vgg" else [], 4


def associated_recipe(dataset, architecture, method):
    from keras_local.methods.associated.recipes import backprop_baseline_recipe

    width, hidden, components = al_setting(dataset, architecture)
    bp_accuracy, al_accuracy = AL_TABLES[(dataset, architecture)]
    associated = method == "associated"
    recipe = (
        get_method("associated").reference_recipe(architecture)
        if associated
        else backprop_baseline_recipe(architecture)
    )
    lines = [
        f"Associated Learning paper, {TABLE_OF[dataset]}, {architecture}: "
        + ("Associated Learning" if associated else "the backprop baseline")
        + f" (paper: BP {bp_accuracy} %, AL {al_accuracy} % test accuracy).",
        settings_line(recipe),
    ]
    if associated:
        lines.append(f"{components} components, bridge width n = {width}; ELU features, sigmoid label path.")
        config = cell(
            architecture, method, dataset, recipe, architecture_options={"hidden_units": hidden} if hidden else {}
        )
        config["method_options"]["width"] = width
    else:
        twin = hidden + [5 * width, width] + [width] * (components - 1)
        lines.append(
            "The paper's fair-comparison rule: the same number of parameters as AL's inference path, "
            f"so the network gets dense layers {twin} (bridge Dense(5n) → Dense(n), then the "
            "decoders h_L … h_2) before its classifier (h_1)."
        )
        config = cell(architecture, method, dataset, recipe, num_blocks=1, architecture_options={"hidden_units": twin})
    return f"associated/{architecture}_{dataset}_{method}.toml", lines, config


def associated_recipes():
    for dataset, architecture in AL_TABLES:
        for method in ("associated", "bp"):
            yield associated_recipe(dataset, architecture, method)


# -- Baselines: InfoPro Table 2, DGL's auxiliary-net study, PredSim's vgg8b ---------

INFOPRO_TABLE2 = {  # test error % (mean of 5 runs), CIFAR-10, K = 2 / 4 / 8 / 16 (methods.md §3.4)
    ("resnet32", "gll"): (10.30, 16.07, 21.19, 24.59),
    ("resnet32", "dgl"): (8.69, 11.48, 14.17, 16.21),
    ("resnet32", "infopro"): (7.76, 8.58, 11.13, 12.75),
    ("resnet110", "gll"): (8.21, 13.16, 15.61, 18.92),
    ("resnet110", "dgl"): (7.70, 10.50, 12.46, 13.80),
    ("resnet110", "infopro"): (6.42, 7.30, 8.93, 9.90),
}
INFOPRO_E2E = {"resnet32": 7.37, "resnet110": 6.50}
# The auxiliary nets InfoPro's baselines use: Greedy SL the 1c2f net ("conv"), DGL the mlp-sr net.
INFOPRO_BASELINE_HEADS = {"gll": "conv", "dgl": "mlp_sr"}


def infopro_recipe(architecture, method, num_blocks):
    from keras_local.methods.infopro.tables import reference_weights

    error = INFOPRO_TABLE2[(architecture, method)][(2, 4, 8, 16).index(num_blocks)]
    label = {"gll": "Greedy SL", "dgl": "DGL", "infopro": "InfoPro (Contrast)"}[method]
    recipe = get_method("infopro").reference_recipe(architecture)
    lines = [
        f"InfoPro Table 2, CIFAR-10, {architecture}, K = {num_blocks}: {label} (InfoPro's split of the network).",
        settings_line(recipe),
        f"Paper: {error} % error (mean of 5 runs); end-to-end {INFOPRO_E2E[architecture]} %.",
    ]
    config = cell(architecture, method, "cifar10", recipe, num_blocks=num_blocks)
    if method == "infopro":
        reconstruction_weights, aux_weights = reference_weights(architecture, num_blocks)
        config["method_options"].update(
            reconstruction_weights=list(reconstruction_weights), aux_weights=list(aux_weights)
        )
    else:
        lines.append(
            f"{label} trains with InfoPro's settings and the auxiliary net InfoPro gives it "
            f"({INFOPRO_BASELINE_HEADS[method]!r})."
        )
        config.update(head=INFOPRO_BASELINE_HEADS[method], method_options={})
    return f"infopro/{method}_{architecture}_k{num_blocks}.toml", lines, config


def infopro_recipes():
    for architecture, method in INFOPRO_TABLE2:
        for num_blocks in (2, 4, 8, 16):
            yield infopro_recipe(architecture, method, num_blocks)


def dgl_recipes():
    """DGL's CIFAR auxiliary-net study: its 6-layer CNN trained layer-wise."""
    recipe = get_method("dgl").reference_recipe("dgl_cnn6")
    for head in ("mlp_sr", "mlp", "cnn"):
        lines = [
            f"DGL auxiliary-net study (auxiliary_nets_study/cifar_dgl.py), CIFAR-10, dgl_cnn6, K = 6, {head} heads.",
            settings_line(recipe),
        ]
        yield (
            f"dgl/dgl_cnn6_{head}_cifar10.toml",
            lines,
            cell("dgl_cnn6", "dgl", "cifar10", recipe, num_blocks=6, head=head),
        )


def predsim_recipes():
    recipe = get_method("predsim").reference_recipe("vgg8b")
    lines = [
        "PredSim (anokland/local-loss), vgg8b on CIFAR-10: every layer a block (K = 7) plus the output layer.",
        settings_line(recipe),
        "Dropout 0.2, leaky ReLU, decoder input ≤ 2048 (the network's own). Paper: 5.58 % error (backprop 5.99 %).",
    ]
    yield "predsim/vgg8b_cifar10.toml", lines, cell("vgg8b", "predsim", "cifar10", recipe, num_blocks=7)


# -- The 2024 rules: MAN and HPFF on DGL / InfoPro, AugLocal ------------------------

RULES_2024 = {  # cell: (method, options, network, K, paper's test error % on CIFAR-10, BP's)
    "man/dgl_man_resnet32_k16": ("dgl", {"man": True}, "resnet32", 16, 9.11, 6.37),
    "man/dgl_man_resnet32_k8": ("dgl", {"man": True}, "resnet32", 8, 8.42, 6.37),
    "man/infopro_man_resnet32_k16": ("infopro", {"man": True}, "resnet32", 16, 9.65, 6.37),
    "hpff/dgl_hpff_resnet32_k16": ("dgl", {"hpff": True}, "resnet32", 16, 8.94, 6.37),
    "hpff/infopro_hpff_resnet32_k16": ("infopro", {"hpff": True}, "resnet32", 16, 8.99, 6.37),
    "auglocal/auglocal_resnet32_k16": ("auglocal", {}, "resnet32", 16, None, 6.37),
    "auglocal/auglocal_resnet110_k55": ("auglocal", {}, "resnet110", 55, 6.04, 5.39),
}


def rule_2024_recipe(path, method, options, architecture, num_blocks, error, bp_error):
    from keras_local.architectures import get_architecture

    recipe = get_method(method, **options).reference_recipe(architecture)
    config = cell(architecture, method, "cifar10", recipe)
    if method == "auglocal":  # the reference's K counts d modules that it folds into the last: K − d blocks
        assert len(get_architecture(architecture)) == num_blocks  # layer-wise: one unit per module
        del config["split"]
        config["cuts"] = list(range(1, num_blocks - config["method_options"]["depth"]))
    else:
        config["num_blocks"] = num_blocks
    rule_name = {"man": "MAN", "hpff": "HPFF"}.get(next(iter(options), ""), "AugLocal")
    lines = [
        f"{rule_name} on {method if options else 'its own auxiliary nets'}, CIFAR-10, {architecture}, "
        f"K = {num_blocks} (the paper's count).",
        settings_line(recipe),
    ]
    if error is not None:
        lines.append(f"Paper: {error} % test error (400-epoch protocol); end-to-end BP {bp_error} %.")
    return f"{path}.toml", lines, config


def rules_2024_recipes():
    for path, cell_settings in RULES_2024.items():
        yield rule_2024_recipe(path, *cell_settings)


def generate():
    """{path under recipes/: TOML text} of every generated recipe."""
    texts = {}
    for path, lines, config in [
        *bwbpf_recipes(),
        *backlink_recipes(),
        *associated_recipes(),
        *infopro_recipes(),
        *dgl_recipes(),
        *predsim_recipes(),
        *rules_2024_recipes(),
    ]:
        lines = [*lines, f"Offline on this project's machines: {OFFLINE[config['dataset']]}"]
        comment = [wrapped for line in lines for wrapped in textwrap.wrap(line, 110, subsequent_indent="  ")]
        texts[path] = "".join(f"# {line}\n" for line in comment) + to_toml(config)
    return texts


def main():
    texts = generate()
    for folder in GENERATED:  # a cell no longer generated goes
        for stale in (ROOT / folder).glob("*.toml"):
            if f"{folder}/{stale.name}" not in texts:
                stale.unlink()
    for path, text in texts.items():
        target = ROOT / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    print(f"wrote {len(texts)} recipes under {ROOT}")


if __name__ == "__main__":
    main()
