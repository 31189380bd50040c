"""Writes the paper recipes under `recipes/bwbpf/` and `recipes/backlink/`.

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
    "tiny_imagenet": "--set data_dir=../shared/data/tfds",
}
TEST_SPLIT = {"cifar10": "test", "cifar100": "test", "tiny_imagenet": "validation"}

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


def main():
    count = 0
    for path, lines, config in [*bwbpf_recipes(), *backlink_recipes()]:
        lines.append(f"Offline on this project's machines: {OFFLINE[config['dataset']]}")
        target = ROOT / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(f"# {line}\n" for line in lines) + to_toml(config))
        count += 1
    print(f"wrote {count} recipes under {ROOT}")


if __name__ == "__main__":
    main()
