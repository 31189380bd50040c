"""Mixed precision: the dtype policy a model is built in.

`build_model(..., dtype_policy="mixed_bfloat16")` (config key `dtype_policy`,
`--set dtype_policy='"mixed_bfloat16"'`) makes every layer, block and head of
the model compute in that Keras policy: `"mixed_float16"` (GPUs with float16
tensor cores; `compile` wraps each block's optimizer in a `LossScaleOptimizer`
of its own) or `"mixed_bfloat16"` (no loss scaling; CPUs with bfloat16 and
recent GPUs and TPUs). Variables stay float32, and so do the heads' logits,
the losses and the errors a backward link sends.

Example:

```python
model = kl.build_model("resnet8", "gll", num_blocks=2, dtype_policy="mixed_bfloat16")
model.blocks[0].dtype_policy.name      # 'mixed_bfloat16'
```
"""

import contextlib

import keras

DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def check_dtype_policy(policy):
    """The policy's name, if it is one of `DTYPE_POLICIES` (or a Keras `DTypePolicy` of one); else a ValueError."""
    name = getattr(policy, "name", policy)
    if name not in DTYPE_POLICIES:
        raise ValueError(f"Unknown dtype_policy {policy!r}. Allowed: {', '.join(DTYPE_POLICIES)}.")
    return name


@contextlib.contextmanager
def dtype_policy_scope(policy):
    """Keras' global dtype policy set to `policy` inside the block (unchanged when None)."""
    if policy is None:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(check_dtype_policy(policy))
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
