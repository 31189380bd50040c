"""keras_local: block-wise local training of deep networks with Keras 3.

Example:

```python
import keras, keras_local as kl
model = kl.build_model("resnet32", method="gll", num_blocks=4, head="linear",
                       input_shape=(32, 32, 3), num_classes=10)
model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
train = kl.data.load_dataset("cifar10_sample", split="train", batch_size=128, training=True)
model.fit(train, epochs=1)
```
"""

__version__ = "0.4.0"

from keras_local import (
    analysis,
    asynchronous,
    block_order,
    callbacks,
    checkpoint,
    cluster,
    compilation,
    data,
    gradient_flow,
    graph,
    greedy,
    heads,
    losses,
    own_model,
    placement,
    plots,
    precision,
    profiling,
    repairs,
    search,
    tuning,
)
from keras_local.architectures import list_architectures
from keras_local.block import Block
from keras_local.builder import build_model
from keras_local.export import export_inference_model
from keras_local.gradient_flow import block_graph, plot_blocks
from keras_local.graph import cut_points
from keras_local.heads import list_heads
from keras_local.methods import Method, get_method, list_methods
from keras_local.model import LocalModel

__all__ = [
    "analysis",
    "asynchronous",
    "block_order",
    "callbacks",
    "checkpoint",
    "cluster",
    "compilation",
    "gradient_flow",
    "graph",
    "greedy",
    "heads",
    "losses",
    "own_model",
    "placement",
    "plots",
    "precision",
    "profiling",
    "repairs",
    "search",
    "tuning",
    "Block",
    "LocalModel",
    "Method",
    "build_model",
    "block_graph",
    "cut_points",
    "plot_blocks",
    "data",
    "export_inference_model",
    "get_method",
    "list_architectures",
    "list_heads",
    "list_methods",
]
