"""Writes the paper recipes under `recipes/` (bwbpf, backlink, associated, infopro, dgl, predsim, and the
2024 rules: man, hpff, auglocal).

One TOML file per cell of the papers' tables (network × dataset × K, and the
head for BackLink's Table 2), with the papers' training settings. Re-run after
changing a setting here, and commit the generated files:

    python tools/make_recipes.py
"""

import pathlib

from keras_local.config import to_toml

ROOT = pathlib.Path(__file__).resolve().parents[1] / "recipes"
OFFLINE = {
    "cifar10": "--set dataset=cifar10_jpeg --set data_dir=../shared/data/tfds",
    "cifar100": "(no offline copy here)",
    "mnist": "(no offline copy here)",
    "tiny_imagenet": "--set data_dir=../shared/data/tfds",
}
TEST_SPLIT = {"cifar10": "test", "cifar100": "test", "mnist": "test", "tiny_imagenet": "validation"}

# -- BWBPF (../shared/papers/bwbpf.md §3, Table 1, Figure 2) -------------------

BWBPF_TABLE1 = {  # error % of BWBPF, (CIFAR-10, Tiny-ImageNet), K = 4
    "vgg19": (6.52, 40.09), "resnet50": (4.85, 35.83), "resnet101": (4.53, 35.28), "resnet152": (4.48, 35.01),
}
# The reference code's K = 4 split: one block per stage (stem with stage 1).
STAGE_CUTS = {"resnet50": [4, 8, 14], "resnet101": [4, 8, 31], "resnet152": [4, 12, 48]}


def bwbpf_recipe(architecture, dataset, num_blocks, deep_supervision=False):
    cifar = dataset == "cifar10"
    error = BWBPF_TABLE1[architecture][0 if cifar else 1] if num_blocks == 4 else None
    lines = [
        f"BWBPF, {architecture}, {'CIFAR-10' if cifar else 'Tiny-ImageNet'}, K = {num_blocks}"
        + (" — deep supervision (what the reference code trains)" if deep_supervision else
           " — paper semantics (cut at every block, output layer on the global loss only)"),
        "Paper settings (BWBPF §3): batch 32, SGD momentum 0.9, lr 0.1 decayed to 1e-4, weight decay 1e-4,",
        f"{200 if cifar else 300} epochs; layers grouped equally into K blocks. Cosine decay is used here.",
    ]
    if error is not None:
        lines.append(f"Paper Table 1: BWBPF error {error} % (numbers from the code, i.e. deep supervision;")
        lines.append("its baselines come from SEDONA's width-16 networks, see notes/methods.md §1.5).")
    else:
        lines.append("Paper Figure 2 (error vs K) gives this cell only as a curve.")
    config = {
        "architecture": architecture,
        "method": "bwbpf",
        "num_blocks": num_blocks,
        "head": "linear",
        "dataset": dataset,
        "test_split": TEST_SPLIT[dataset],
        "batch_size": 32,
        "eval_batch_size": 500,
        "epochs": 200 if cifar else 300,
        "optimizer": "sgd",
        "learning_rate": 0.1,
        "final_learning_rate": 1e-4,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "lr_schedule": "cosine",
        "seed": 0,
        "method_options": {"lambda_global": 1.0, "lambda_local": 1.0, "deep_supervision": deep_supervision},
    }
    if deep_supervision and architecture in STAGE_CUTS:
        lines.append("The reference code's split: one block per ResNet stage.")
        config["cuts"] = STAGE_CUTS[architecture]
        del config["num_blocks"]
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

BACKLINK_NETWORKS = {
    # architecture: (learning rate, weight decay, epochs, architecture options, units)
    "alexnet": (0.01, 5e-4, 100, {}, 7),
    "vgg16": (0.01, 1e-4, 150, {"hidden_units": [4096, 4096]}, 15),
    "resnet32": (0.5, 5e-4, 200, {}, 16),
    "resnet110": (0.3, 5e-4, 200, {}, 55),
}


def backlink_recipe(architecture, dataset, num_blocks, head):
    learning_rate, weight_decay, epochs, options, num_units = BACKLINK_NETWORKS[architecture]
    table = "Table 2 (convolutional local classifiers)" if head == "conv" else "Table 1 (linear local classifiers)"
    lines = [
        f"BackLink, {architecture}, {dataset.upper().replace('CIFAR', 'CIFAR-')}, K = {num_blocks}, {head} heads: "
        f"a cell of the paper's {table}.",
        "Paper settings (BackLink §3.1): batch 512, SGD momentum 0.9, weight decay 1e-4 (VGG16) / 5e-4",
        f"(ResNets; AlexNet's is not stated, 5e-4 here), {epochs} epochs, lr {learning_rate}; the schedule is",
        "tuned per network in the paper and not stated: cosine decay here. α is searched in",
        "{0, .25, .5, .75, 1} per network in the paper (values not given); 0.5 here.",
        "The table's rows l = 1..4: --set propagation_length=N (at most the shortest block but the last).",
    ]
    config = {
        "architecture": architecture,
        "method": "backlink",
        "num_blocks": num_blocks,
        "head": head,
        "dataset": dataset,
        "batch_size": 512,
        "eval_batch_size": 1000,
        "epochs": epochs,
        "optimizer": "sgd",
        "learning_rate": learning_rate,
        "momentum": 0.9,
        "weight_decay": weight_decay,
        "lr_schedule": "cosine",
        "seed": 0,
        "method_options": {"alpha": 0.5, "propagation_length": 1},
        "architecture_options": options,
    }
    if num_blocks > num_units:  # the paper counts the classifier as a layer
        lines.append(f"{architecture} has {num_units} units plus the classifier, so K = {num_blocks} puts one")
        lines.append("unit in each block and the output layer alone in the last one.")
        config["cuts"] = list(range(1, num_units + 1))
        del config["num_blocks"]
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
    ("mnist", "mlp"): (98.5, 98.6), ("mnist", "cnn"): (99.4, 99.5),
    ("cifar10", "mlp"): (60.6, 62.8), ("cifar10", "cnn"): (85.2, 85.8), ("cifar10", "resnet20"): (91.2, 89.1),
    ("cifar10", "resnet32"): (92.0, 88.7), ("cifar10", "vgg"): (92.3, 92.6),
    ("cifar100", "mlp"): (26.5, 29.7), ("cifar100", "cnn"): (51.1, 52.2), ("cifar100", "resnet20"): (63.7, 61.0),
    ("cifar100", "resnet32"): (63.7, 59.0), ("cifar100", "vgg"): (65.8, 67.1),
}
TABLE_OF = {"mnist": "Table 2 (MNIST)", "cifar10": "Table 3 (CIFAR-10)", "cifar100": "Table 4 (CIFAR-100)"}


def al_setting(dataset, architecture):
    """(width n, the feature path's own hidden layers, number of components, weight decay)."""
    if architecture == "mlp":
        hidden = [1024, 1024] if dataset == "mnist" else [3000, 3000]
        return hidden[0], hidden, 2, 0.0
    width = {"cnn": 256, "vgg": 300}.get(architecture, 300) if dataset != "cifar100" else 500
    hidden = [1024, 1024] if architecture == "vgg" else []
    decay = {"vgg": 5e-4, "resnet20": 1e-4, "resnet32": 1e-4}.get(architecture, 0.0)
    if dataset == "cifar100" and architecture.startswith("resnet"):
        decay = 5e-4
    return width, hidden, 4, decay


def associated_recipe(dataset, architecture, method):
    width, hidden, components, decay = al_setting(dataset, architecture)
    bp_accuracy, al_accuracy = AL_TABLES[(dataset, architecture)]
    resnet_bp = method == "bp" and architecture.startswith("resnet")
    lines = [
        f"Associated Learning paper, {TABLE_OF[dataset]}, {architecture}: "
        + ("Associated Learning" if method == "associated" else "the backprop baseline")
        + f" (paper: BP {bp_accuracy} %, AL {al_accuracy} % test accuracy).",
        "Reference settings: Adam, batch 32, 200 epochs, learning rate "
        + ("1e-3 (ResNet BP only)" if resnet_bp else "1e-4")
        + " multiplied by 0.1 at 40 %, 60 %, 80 % of training and 0.5 at 90 %.",
    ]
    config = {
        "architecture": architecture,
        "method": method,
        "dataset": dataset,
        "batch_size": 32,
        "eval_batch_size": 500,
        "epochs": 200,
        "optimizer": "adam",
        "learning_rate": 1e-3 if resnet_bp else 1e-4,
        "lr_schedule": "piecewise",
        "weight_decay": decay,
        "seed": 0,
    }
    if method == "associated":
        lines.append(f"{components} components, bridge width n = {width}; ELU features, sigmoid label path;")
        lines.append("autoencoder learning rate 2x.")
        config["method_options"] = {"width": width}
        config["architecture_options"] = {"hidden_units": hidden} if hidden else {}
        config["num_blocks"] = "auto"  # the reference's components
    else:
        twin = hidden + [5 * width, width] + [width] * (components - 1)
        lines.append("The paper's fair-comparison rule: the same number of parameters as AL's inference path,")
        lines.append(f"so the network gets dense layers {twin} (bridge Dense(5n) → Dense(n), then the")
        lines.append("decoders h_L … h_2) before its classifier (h_1).")
        config["architecture_options"] = {"hidden_units": twin}
        config["num_blocks"] = 1
    if dataset == "cifar10":
        config["test_split"] = "test"
    return f"associated/{architecture}_{dataset}_{method}.toml", lines, config


def associated_recipes():
    for dataset, architecture in AL_TABLES:
        for method in ("associated", "bp"):
            yield associated_recipe(dataset, architecture, method)


# -- Baselines: InfoPro Table 2, DGL's auxiliary-net study, PredSim's vgg8b ---------

INFOPRO_TABLE2 = {  # test error % (mean of 5 runs), CIFAR-10, K = 2 / 4 / 8 / 16 (methods.md §3.4)
    ("resnet32", "gll"): (10.30, 16.07, 21.19, 24.59), ("resnet32", "dgl"): (8.69, 11.48, 14.17, 16.21),
    ("resnet32", "infopro"): (7.76, 8.58, 11.13, 12.75),
    ("resnet110", "gll"): (8.21, 13.16, 15.61, 18.92), ("resnet110", "dgl"): (7.70, 10.50, 12.46, 13.80),
    ("resnet110", "infopro"): (6.42, 7.30, 8.93, 9.90),
}
INFOPRO_E2E = {"resnet32": 7.37, "resnet110": 6.50}
# λ (ixx_1, ixy_1, ixx_2, ixy_2) from the reference's comand.sh where it gives them; else its K = 4 setting.
INFOPRO_LAMBDAS = {("resnet32", 16): (5.0, 0.05, 0.2, 0.5), ("resnet110", 2): (5.0, 0.5, 0.0, 0.0),
                   ("resnet110", 4): (1.0, 0.0, 0.0, 1.0)}


def infopro_recipe(architecture, method, num_blocks):
    error = INFOPRO_TABLE2[(architecture, method)][(2, 4, 8, 16).index(num_blocks)]
    label = {"gll": "Greedy SL", "dgl": "DGL", "infopro": "InfoPro (Contrast)"}[method]
    lines = [
        f"InfoPro Table 2, CIFAR-10, {architecture}, K = {num_blocks}: {label} (InfoPro's split of the network).",
        "Settings (InfoPro train.py): batch 1024, SGD Nesterov 0.9, lr 0.8 with a 10-epoch warm-up from 0.01",
        "then cosine, weight decay 1e-4, 160 epochs.",
        f"Paper: {error} % error (mean of 5 runs); end-to-end {INFOPRO_E2E[architecture]} %.",
    ]
    config = {
        "architecture": architecture, "method": method, "num_blocks": num_blocks, "split": "infopro",
        "head": {"gll": "conv", "dgl": "mlp_sr", "infopro": "infopro"}[method],
        "dataset": "cifar10", "batch_size": 1024, "eval_batch_size": 1000, "epochs": 160,
        "optimizer": "sgd", "learning_rate": 0.8, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
        "lr_schedule": "cosine", "warmup_epochs": 10, "warmup_learning_rate": 0.01,
    }
    if method == "gll":
        lines.append("Greedy SL's head here is the 1c2f net ('conv'), the auxiliary net InfoPro uses for it.")
    if method == "infopro":
        lambdas = INFOPRO_LAMBDAS.get((architecture, num_blocks))
        if lambdas is None:
            lines.append("The reference gives no λ for this cell: its K = 4 setting (1, 0, 0, 1) is used.")
            lambdas = (1.0, 0.0, 0.0, 1.0)
        config["method_options"] = {"aux_loss": "contrast", "reconstruction_weights": [lambdas[0], lambdas[2]],
                                    "aux_weights": [lambdas[1], lambdas[3]]}
    return f"infopro/{method}_{architecture}_k{num_blocks}.toml", lines, config


def infopro_recipes():
    for (architecture, method) in INFOPRO_TABLE2:
        for num_blocks in (2, 4, 8, 16):
            yield infopro_recipe(architecture, method, num_blocks)


def dgl_recipes():
    """DGL's CIFAR auxiliary-net study: its 6-layer CNN trained layer-wise."""
    for head in ("mlp_sr", "mlp", "cnn"):
        lines = [
            f"DGL auxiliary-net study (auxiliary_nets_study/cifar_dgl.py), CIFAR-10, dgl_cnn6, K = 6, {head} heads.",
            "Settings: batch 128, SGD momentum 0.9, lr 0.1 × 0.2 every 15 epochs, weight decay 5e-4, 50 epochs.",
            "DGL trains each module in turn on every batch: the sequential schedule.",
        ]
        config = {
            "architecture": "dgl_cnn6", "method": "dgl", "num_blocks": 6, "head": head, "schedule": "sequential",
            "dataset": "cifar10", "batch_size": 128, "epochs": 50, "optimizer": "sgd", "learning_rate": 0.1,
            "momentum": 0.9, "weight_decay": 5e-4, "lr_schedule": "piecewise",
            "lr_boundaries": [0.3, 0.6, 0.9], "lr_multipliers": [1.0, 0.2, 0.04, 0.008],
        }
        yield f"dgl/dgl_cnn6_{head}_cifar10.toml", lines, config


def predsim_recipes():
    lines = [
        "PredSim (anokland/local-loss), vgg8b on CIFAR-10: every layer a block (K = 7) plus the output layer.",
        "Settings: Adam lr 5e-4, × 0.25 at epochs 200, 300, 350, 375 of 400, batch 128, no weight decay,",
        "dropout 0.2, leaky ReLU, β = 0.99, decoder input ≤ 2048. Paper: 5.58 % error (backprop 5.99 %).",
    ]
    config = {
        "architecture": "vgg8b", "method": "predsim", "num_blocks": 7, "dataset": "cifar10", "batch_size": 128,
        "epochs": 400, "optimizer": "adam", "learning_rate": 5e-4, "weight_decay": 0.0,
        "lr_schedule": "piecewise", "lr_boundaries": [0.5, 0.75, 0.875, 0.9375],
        "lr_multipliers": [1.0, 0.25, 0.0625, 0.015625, 0.00390625], "method_options": {"beta": 0.99},
    }
    yield "predsim/vgg8b_cifar10.toml", lines, config


# -- The 2024 rules: MAN and HPFF on DGL / InfoPro, AugLocal (their settings: `Method.reference_recipe`) ------

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
    from keras_local.methods import get_method

    rule = get_method(method, **options)
    recipe = rule.reference_recipe(architecture)
    config = {"architecture": architecture, "method": method, "dataset": "cifar10", "eval_batch_size": 1000,
              **{key: value for key, value in recipe.settings.items() if key != "method_options"}}
    if method == "auglocal":  # the reference's K counts d modules that it folds into the last: K − d blocks
        depth = recipe.settings["method_options"]["depth"]
        config.pop("split")
        config["cuts"] = list(range(1, num_blocks - depth))
        assert len(get_architecture(architecture)) == num_blocks  # layer-wise: one unit per module
    else:
        config["num_blocks"] = num_blocks
    config["method_options"] = {key: value for key, value in {**recipe.settings["method_options"], **options}.items()
                                if value is not None}  # None: the dataset's own (TOML has no null)
    rule_name = {"man": "MAN", "hpff": "HPFF"}.get(next(iter(options), ""), "AugLocal")
    lines = [f"{rule_name} on {method if options else 'its own auxiliary nets'}, CIFAR-10, {architecture}, "
             f"K = {num_blocks} (the paper's count).", f"Settings: {recipe.source}."]
    if error is not None:
        lines.append(f"Paper: {error} % test error (400-epoch protocol); end-to-end BP {bp_error} %.")
    return f"{path}.toml", lines, config


def rules_2024_recipes():
    for path, cell in RULES_2024.items():
        yield rule_2024_recipe(path, *cell)


def main():
    count = 0
    for path, lines, config in [*bwbpf_recipes(), *backlink_recipes(), *associated_recipes(), *infopro_recipes(),
                                *dgl_recipes(), *predsim_recipes(), *rules_2024_recipes()]:
        lines.append(f"Offline on this project's machines: {OFFLINE[config['dataset']]}")
        target = ROOT / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(f"# {line}\n" for line in lines) + to_toml(config))
        count += 1
    print(f"wrote {count} recipes under {ROOT}")


if __name__ == "__main__":
    main()
