"""How well a layer's features separate the classes (Associated Learning §5.4).

The intra-class distance of class k is the mean distance between two of its
examples; the inter-class distance is the mean distance between two class
centroids; their ratio (inter / intra, larger is better) is the paper's
"metafeature quality" (its Table 7).

Example:

```python
model = kl.build_model("resnet8", "gll", num_blocks=2)   # train it first for a meaningful ratio
test = kl.data.load_dataset("cifar10_sample", "test", batch_size=500)
features, labels = block_features(model, test, block=-1, limit=1000)
class_distance_ratio(features, labels)["ratio"]
kl.plots.plot_features(features, labels, "features.png")   # PCA scatter, needs matplotlib
```
"""

import numpy as np


def _mean_pairwise_distance(points):
    """Mean Euclidean distance over the pairs of distinct rows of `points`."""
    if len(points) < 2:
        return None
    squared = np.sum(points**2, axis=1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * points @ points.T, 0.0))
    upper = np.triu_indices(len(points), k=1)
    return float(distances[upper].mean())


def class_distance_ratio(features, labels):
    """Intra-class and inter-class distances of `features` (flattened per
    example) and their ratio.

    Returns a dict with `intra_class_distance` (mean over classes with two or
    more examples), `inter_class_distance`, `ratio` and `num_classes`.
    """
    features = np.reshape(np.asarray(features, dtype=np.float64), (len(features), -1))
    labels = np.asarray(labels).reshape(-1)
    if len(features) != len(labels):
        raise ValueError(f"Got {len(features)} feature rows for {len(labels)} labels.")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"Need examples of at least 2 classes, got classes {classes.tolist()}.")
    intra = [_mean_pairwise_distance(features[labels == c]) for c in classes]
    intra = [value for value in intra if value is not None]
    if not intra:
        raise ValueError("Need at least one class with two or more examples.")
    centroids = np.stack([features[labels == c].mean(axis=0) for c in classes])
    intra_distance, inter_distance = float(np.mean(intra)), _mean_pairwise_distance(centroids)
    return {
        "intra_class_distance": intra_distance,
        "inter_class_distance": inter_distance,
        "ratio": inter_distance / intra_distance if intra_distance > 0 else float("inf"),
        "num_classes": int(len(classes)),
    }


def block_features(model, dataset, block=-1, head=False, limit=None):
    """The output of `model.blocks[block]` (or of its head, e.g. an
    Associated Learning bridge, with `head=True`) on `dataset`'s images, in
    inference mode, with their labels, as numpy arrays (at most `limit` rows)."""
    num_blocks = len(model.blocks)
    if not -num_blocks <= block < num_blocks:
        raise ValueError(f"block={block} is out of range for a model of {num_blocks} blocks.")
    index = block % num_blocks
    if head and model.blocks[index].head is None:
        raise ValueError(f"Block {index} has no head; analyze its features (head=False) instead.")
    features, labels, count = [], [], 0
    for images, batch_labels in dataset:
        x = images
        for current in model.blocks[: index + 1]:
            x = current(x, training=False)
        if head:
            x = model.blocks[index].head(x, training=False)
        features.append(np.reshape(np.asarray(x), (len(x), -1)))
        labels.append(np.asarray(batch_labels))
        count += len(x)
        if limit is not None and count >= limit:
            break
    features, labels = np.concatenate(features), np.concatenate(labels)
    return (features, labels) if limit is None else (features[:limit], labels[:limit])
