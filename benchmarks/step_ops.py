"""The arithmetic of a training step, counted: the convolutions (forward, input
gradient, filter gradient) and all ops of each method's step graph after
Grappler's pruning, as ratios to a reference method.

    python benchmarks/step_ops.py --architecture resnet20 --num-blocks 4 --batch-size 128 \
        --methods gll "backlink:alpha=0.5,propagation_length=1" --block-orders together sequential

Unlike a timing, the count is the same on every machine: it says how much more
work a method's step does, which bounds what a faster implementation can reach
(BackLink's tail runs its backward twice: once with the tail's own error for
the rest of the block, once with the mixed error for the tail's weights; and
block k sends the error at its input back).
"""

import argparse
import collections
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from step_time import parse_method  # noqa: E402
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2  # noqa: E402
from tensorflow.python.grappler import tf_optimizer  # noqa: E402

import keras_local as kl  # noqa: E402

CONVOLUTIONS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")


def step_ops(args, spec, block_order):
    """{op type: count} of one training step's graph after Grappler."""
    method, options = parse_method(spec)
    model = kl.build_model(args.architecture, method=method, num_blocks=args.num_blocks, head="linear",
                           input_shape=(32, 32, 3), num_classes=10, block_order=block_order, **options)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    model.train_on_batch(tf.zeros((2, 32, 32, 3)), tf.zeros((2,), "int64"))
    function = tf.function(lambda x, y: model.train_step((x, y)))
    concrete = function.get_concrete_function(tf.TensorSpec((args.batch_size, 32, 32, 3)),
                                              tf.TensorSpec((args.batch_size,), tf.int64))
    meta_graph = tf.compat.v1.train.export_meta_graph(graph_def=concrete.graph.as_graph_def(), graph=concrete.graph)
    fetch = meta_graph_pb2.CollectionDef()
    fetch.node_list.value.extend(tensor.name for tensor in concrete.outputs)
    meta_graph.collection_def["train_op"].CopyFrom(fetch)
    graph = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta_graph)
    counts = collections.Counter(node.op for node in graph.node)
    for function_def in graph.library.function:
        counts.update(node.op for node in function_def.node_def)
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="resnet20")
    parser.add_argument("--num-blocks", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--methods", nargs="+", default=["gll", "backlink:alpha=0.5,propagation_length=1"])
    parser.add_argument("--block-orders", nargs="+", default=["together", "sequential"])
    args = parser.parse_args()
    for block_order in args.block_orders:
        reference = None
        for spec in args.methods:
            counts = step_ops(args, spec, block_order)
            convolutions = sum(counts[name] for name in CONVOLUTIONS)
            total = sum(counts.values())
            reference = reference or (convolutions, total)
            print(f"{block_order:10s} {spec:42s} " + " ".join(f"{name} {counts[name]}" for name in CONVOLUTIONS)
                  + f"; convolutions {convolutions} ({convolutions / reference[0]:.2f}x {args.methods[0]}), "
                  f"ops {total} ({total / reference[1]:.2f}x)")


if __name__ == "__main__":
    main()
