"""The `keras-local` command line.

keras-local train                                   # demo on the embedded CIFAR-10 sample
keras-local train --config recipes/gll_resnet32_cifar10.toml --set epochs=5
keras-local train --set method=predsim --set architecture=vgg8b --recipe reference --set epochs=2
keras-local train --workers 2                       # data parallel: 2 worker processes on 127.0.0.1
keras-local list                                    # methods, architectures, heads, datasets
keras-local analyze --model runs/x/model.keras --dataset cifar10_sample --block 3 --plot f.png
keras-local profile --set architecture=resnet110 --num-blocks 2,4,8,16 --output-dir runs/profile
keras-local tune --config recipes/tuning/backlink_resnet20_alpha_l.toml --max-trials 10
"""

import argparse
import os
import sys

from keras_local.validation import check_number


def _parser():
    parser = argparse.ArgumentParser(prog="keras-local", description="Block-wise local training with Keras.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train and evaluate a model from a config")
    train.add_argument("--config", help="TOML recipe (see recipes/); defaults give the quick demo")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set epochs=5 (repeatable)",
    )
    train.add_argument("--run-dir", help="where outputs go (default: runs/<architecture>-<method>-k<K>-<dataset>)")
    train.add_argument(
        "--recipe",
        choices=("shared", "reference"),
        help="reference: the method's own training recipe (optimizer, schedule, weight decay, "
        "batch, epochs, head) under the config file and --set",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --run-dir (finished, interrupted or of another config)",
    )
    train.add_argument(
        "--block-workers",
        type=int,
        default=None,
        metavar="N",
        help="put the blocks on N TensorFlow server processes on this machine (127.0.0.1), "
        "block group k on worker k; on a real cluster set remote_workers instead",
    )
    train.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="train data-parallel on N worker processes on this machine (127.0.0.1; "
        "MultiWorkerMirroredStrategy); on a real cluster set TF_CONFIG on each machine instead",
    )
    train.add_argument(
        "--trusted-network",
        action="store_true",
        help="with --workers / --block-workers: start the local TensorFlow servers in this machine's own "
        "network (reachable from other machines: they run any graph sent to them, unauthenticated) "
        "instead of a private one; only where the system refuses private networks and the network is trusted",
    )
    serve = commands.add_parser("serve", help="run this machine's TensorFlow server of a remote-blocks cluster")
    serve.add_argument(
        "--cluster",
        required=True,
        metavar="HOST:PORT,...",
        help="every worker's address, the same list on every machine and in remote_workers",
    )
    serve.add_argument("--index", type=int, required=True, help="this machine's position in --cluster")
    serve.add_argument("--threads", type=int, default=None, help="intra-op threads (default: TensorFlow's)")
    listing = commands.add_parser("list", help="list methods, architectures, heads and datasets")
    listing.add_argument("--data-dir", help="also list the datasets prepared under this TFDS data root")
    analyze = commands.add_parser(
        "analyze", help="class separation of a block's features (inter/intra-class distance ratio)"
    )
    analyze.add_argument("--model", required=True, help="a saved LocalModel (.keras)")
    analyze.add_argument("--dataset", default="cifar10_sample")
    analyze.add_argument("--data-dir", help="TFDS data root of the dataset")
    analyze.add_argument("--split", default="test")
    analyze.add_argument("--block", type=int, default=-1, help="block index (default: the last)")
    analyze.add_argument("--head", action="store_true", help="use the block's head output (e.g. AL's bridge)")
    analyze.add_argument("--examples", type=int, default=1000, help="examples to use")
    analyze.add_argument("--plot", help="write a PCA scatter PNG here (needs matplotlib)")
    profile = commands.add_parser(
        "profile", help="per-block times, peak memory per block order and K, projected pipelined speed-up"
    )
    profile.add_argument("--config", help="TOML recipe for the model (defaults: the demo's resnet20 gll)")
    profile.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    profile.add_argument(
        "--num-blocks", default=None, help="comma-separated K values for the memory curve (default: the config's K)"
    )
    profile.add_argument("--batch-size", type=int, default=None, help="default: the config's batch_size")
    profile.add_argument("--repeats", type=int, default=10, help="timed calls per block part")
    profile.add_argument("--output-dir", default="runs/profile", help="where profile.json and profile.png go")
    plot = commands.add_parser(
        "plot", help="a picture of the config's model: its blocks, heads, cuts, links and devices (needs matplotlib)"
    )
    plot.add_argument("--config", help="TOML recipe for the model (defaults: the demo's resnet20 gll)")
    plot.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    plot.add_argument("--output", default="blocks.png", help="the PNG to write (default: blocks.png)")
    tune = commands.add_parser("tune", help="keras-tuner search of a config's [search] table")
    tune.add_argument("--config", help="TOML recipe with a [search] table (keys it lacks are fixed)")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    tune.add_argument("--max-trials", type=int, default=10)
    tune.add_argument("--tuner", default="random", help="random, hyperband, bayesian or grid")
    tune.add_argument(
        "--objective", default="val_accuracy", help="a logged metric: val_accuracy, val_acc_<k>, val_loss_<k>, ..."
    )
    tune.add_argument("--direction", choices=("max", "min"), help="default: max for accuracies, min for losses")
    tune.add_argument(
        "--validation-examples",
        type=int,
        default=None,
        help="held out from the end of the training split (default: 10%%, at most 5000)",
    )
    tune.add_argument(
        "--probe-splits",
        type=int,
        default=0,
        metavar="STEPS",
        help="first rank each K's cut candidates by a STEPS-step local-training probe",
    )
    tune.add_argument("--output-dir", default="runs/tune")
    tune.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    return parser


def _tune(args):
    from keras_local import search
    from keras_local.config import load_config
    from keras_local.methods import method_option_names

    config = load_config(args.config, args.set, method_option_names())
    result = search.tune(
        config,
        tuner=args.tuner,
        max_trials=args.max_trials,
        objective_name=args.objective,
        direction=args.direction,
        output_dir=args.output_dir,
        validation_examples=args.validation_examples,
        probe_steps=args.probe_splits,
        overwrite=args.overwrite,
    )
    print(f"| trial | {result['objective']['name']} | config |\n|---|---|---|")
    for trial in result["trials"]:
        keys = trial["config"]
        shown = {key: keys[key] for key in ("method", "num_blocks", "cuts", "head", "learning_rate") if key in keys}
        score = "-" if trial["score"] is None else f"{trial['score']:.4f}"
        print(f"| {trial['trial_id']} | {score} | {shown} {keys['method_options'] or ''} |")
    best = result["best"]
    print(
        f"best: trial {best['trial_id']} ({best['score']:.4f}) -> {args.output_dir}/best.toml"
        + (f", {result['plot']}" if result["plot"] else "")
    )


def _plot(args):
    from keras_local import data
    from keras_local.builder import build_model_from_config
    from keras_local.config import load_config
    from keras_local.gradient_flow import plot_blocks
    from keras_local.methods import method_option_names

    config = load_config(args.config, args.set, method_option_names())
    input_shape, num_classes = data.dataset_info(config["dataset"], config["data_dir"])
    model = build_model_from_config(config, input_shape, num_classes)
    graph = plot_blocks(model, to_file=args.output)
    links = len({edge.target for edge in graph.edges_of("link")})
    cuts = sum(edge.cut for edge in graph.edges)
    print(
        f"{args.output}: {len(model.blocks)} blocks of {config['architecture']} under {graph.method}, "
        f"{cuts} gradient cuts, {links} linked units"
    )


def _profile(args):
    import tensorflow as tf

    from keras_local import data, plots, profiling
    from keras_local.config import load_config
    from keras_local.files import write_json
    from keras_local.methods import method_option_names
    from keras_local.splitting import parse_cuts

    tf.get_logger().setLevel("ERROR")  # each measured copy traces its own functions: expected retracing
    config = load_config(args.config, args.set, method_option_names())
    ks = parse_cuts(args.num_blocks) if args.num_blocks else [config["num_blocks"]]
    if any(k < 1 for k in ks):
        raise ValueError(f"--num-blocks must list positive integers, got {args.num_blocks!r}.")
    batch_size = args.batch_size or config["batch_size"]
    input_shape, num_classes = data.dataset_info(config["dataset"], config["data_dir"])
    batch = data.load_dataset(
        config["dataset"], config["train_split"], batch_size, training=True, data_dir=config["data_dir"]
    )
    x, y = next(iter(batch))
    result = profiling.profile_config(config, ks, x, y, input_shape, num_classes, repeats=args.repeats)
    reports = result["profiles"]
    memory = {k: {"bp": result["bp_peak_memory_mib"], **reports[k]["peak_memory_mib"]} for k in ks}
    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "profile.json")
    write_json(path, result)
    try:
        plot = plots.plot_profile(
            memory,
            reports[ks[-1]]["block_seconds"],
            os.path.join(args.output_dir, "profile.png"),
            title=f"{config['architecture']} {config['method']}, batch {batch_size}",
        )
    except ImportError:
        plot = None
    for k in ks:
        ratios = ", ".join(
            f"{name} {value:.2f}"
            for name, value in result["peak_memory_ratio_to_bp"][k].items()
            if value is not None and name != "bp"
        )
        print(
            f"K={k}: projected pipelined speed-up {reports[k]['projected_speedup']:.2f}; "
            f"peak memory / bp: {ratios or 'not measured (allocator keeps no statistics)'}"
        )
    print(f"wrote {path}" + (f" and {plot}" if plot else ""))


def _analyze(args):
    import json

    import keras

    from keras_local import analysis, data, plots  # importing the package registers the model classes

    if not os.path.exists(args.model):
        raise ValueError(f"--model {args.model!r} does not exist.")
    try:
        model = keras.saving.load_model(args.model)
    except Exception as error:  # zipfile, h5py and Keras each raise their own
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--model {args.model!r} is not a readable .keras file ({message}).") from None
    dataset = data.load_dataset(
        args.dataset, args.split, batch_size=250, data_dir=args.data_dir, num_examples=args.examples
    )
    features, labels = analysis.block_features(model, dataset, block=args.block, head=args.head)
    result = {
        "model": args.model,
        "block": args.block,
        "head": args.head,
        "examples": len(labels),
        **analysis.class_distance_ratio(features, labels),
    }
    if args.plot:
        result["plot"] = plots.plot_features(
            features, labels, args.plot, title=f"{model.name}, block {args.block}{' head' if args.head else ''}"
        )
    print(json.dumps(result))


def _summary_line(summary):
    blocks = " ".join(f"{value:.3f}" for value in summary["block_accuracies"].values())
    blocks = f" (block heads: {blocks})" if blocks else ""
    return (
        f"{summary['architecture']} {summary['method']} K={summary['num_blocks']} on "
        f"{summary['dataset']}, {summary['epochs']} epochs: test accuracy "
        f"{summary['test_accuracy']:.4f}{blocks} in {summary['seconds']:.0f} s -> {summary['run_dir']}"
    )


def _without_workers(argv):
    """`argv` without its `--workers N` / `--workers=N`."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--workers":
            skip = True
        elif not item.startswith("--workers="):
            kept.append(item)
    return kept


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.command == "profile":  # before TensorFlow starts: the CPU allocator's peak statistics
        os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    from keras_local import cluster, data
    from keras_local.architectures import list_architectures
    from keras_local.config import load_config
    from keras_local.heads import list_heads
    from keras_local.methods import list_methods, method_option_names
    from keras_local.train import TrainingDiverged, train_and_evaluate

    try:
        if args.command == "list":
            print("methods:       " + ", ".join(list_methods()))
            print(
                "architectures: "
                + ", ".join(list_architectures())
                + ', or your own: "keras.applications.NAME", "module:function"'
            )
            print("heads:         " + ", ".join(list_heads()))
            print("datasets:      " + ", ".join(data.available_datasets(args.data_dir)))
            return 0
        if args.command == "analyze":
            _analyze(args)
            return 0
        if args.command == "profile":
            _profile(args)
            return 0
        if args.command == "plot":
            _plot(args)
            return 0
        if args.command == "tune":
            _tune(args)
            return 0
        if args.command == "serve":
            return _serve(args)
        recipe = [f'recipe="{args.recipe}"'] if args.recipe else []
        config = load_config(args.config, recipe + args.set, method_option_names())
        if args.workers is not None or args.block_workers is not None:
            _check_local_cluster(args, config)
            if not args.trusted_network and not cluster.in_private_network():  # servers no one else reaches
                return cluster.run_in_private_network([sys.executable, "-m", "keras_local.cli", *argv])
        if args.workers is not None:
            return _train_on_local_workers(args, argv)
        if args.block_workers is not None:
            summary = _train_with_local_block_workers(args, config)
        else:
            summary = train_and_evaluate(config, run_dir=args.run_dir, overwrite=args.overwrite)
    except ValueError as error:  # bad input: nothing was trained
        return _fail(error, 2)
    except cluster.PrivateNetworkError as error:
        return _fail(f"{error}; pass --trusted-network to start them reachable on a trusted network", 2)
    except (OSError, TrainingDiverged) as error:  # a file or data error, a diverged run
        return _fail(error, 1)
    except Exception as error:
        import tensorflow as tf

        if isinstance(error, tf.errors.OpError):  # e.g. DataLossError from a damaged shard mid-epoch
            return _fail(error, 1)
        raise
    prefix = "already finished (--overwrite to train again): " if summary.get("already_finished") else ""
    print(prefix + _summary_line(summary))
    return 0


def _check_local_cluster(args, config):
    """Validates `--workers N` / `--block-workers N` before any process starts."""
    from keras_local import cluster

    if args.workers is not None:
        check_number("--workers", args.workers, 1, integer=True)
        if cluster.cluster_config() is not None:
            raise ValueError(
                "--workers starts its own local cluster; unset TF_CONFIG, or drop --workers to join "
                "the cluster TF_CONFIG describes."
            )
    if args.block_workers is not None:
        check_number("--block-workers", args.block_workers, 1, integer=True)
        if config["remote_workers"]:
            raise ValueError(
                "--block-workers starts its own servers; drop remote_workers from the config, or "
                "drop --block-workers to use them."
            )


def _train_on_local_workers(args, argv):
    """`keras-local train --workers N`: the same command as N worker processes on 127.0.0.1."""
    from keras_local import cluster

    return cluster.run_local_workers(_without_workers(argv), args.workers, trusted_network=args.trusted_network)


def _train_with_local_block_workers(args, config):
    """`keras-local train --block-workers N`: the blocks on N local TensorFlow servers."""
    from keras_local import cluster
    from keras_local.train import train_and_evaluate

    with cluster.local_servers(args.block_workers, trusted_network=args.trusted_network) as devices:
        return train_and_evaluate(
            {**config, "devices": config["devices"] or devices}, run_dir=args.run_dir, overwrite=args.overwrite
        )


def _serve(args):
    from keras_local import cluster

    addresses = [address.strip() for address in args.cluster.split(",") if address.strip()]
    if not 0 <= args.index < len(addresses):
        raise ValueError(f"--index {args.index} is not a position in --cluster ({len(addresses)} workers).")
    print(f"serving worker {args.index} of {addresses} (stop with Ctrl-C)", flush=True)
    port = addresses[args.index].rsplit(":", 1)[-1]
    print(
        f"note: TensorFlow listens on port {port} of every network interface and runs any graph sent to it, "
        f"unauthenticated: keep this cluster on a private network",
        file=sys.stderr,
        flush=True,
    )
    cluster.serve({"worker": addresses}, args.index, threads=args.threads)
    return 0


def _fail(error, code):
    """Prints the error on one line (a TensorFlow error's first line, without its graph trace)."""
    import tensorflow as tf

    if isinstance(error, tf.errors.OpError):
        text = f"{type(error).__name__}: {error.message.strip().splitlines()[0]}"
    elif isinstance(error, OSError) and error.strerror:
        text = f"{error.filename!r}: {error.strerror}" if error.filename else error.strerror
    else:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    print(f"keras-local: error: {text}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
