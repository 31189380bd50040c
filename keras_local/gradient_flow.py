"""Where each gradient goes in a `LocalModel`: the graph, and its picture.

`block_graph(model)` describes the model as nodes and edges:

- nodes: each unit (named by the layer that ends it, for a user's model),
  each block's head and its loss, Associated Learning's label blocks, MAN's
  moving-average copies; each with its block and its block's device;
- edges, by kind: `"forward"` (unit to unit; between blocks `cut` says that
  the gradient stops there), `"head"` (a block's output to its head),
  `"loss"` (a head to its loss), `"link"` (a later loss's error sent back
  into the tail of a block: BackLink's last l units, HPFF's cascade over the
  whole block), `"label_path"` (Associated Learning's label blocks, and the
  code each block's bridge regresses), `"average"` (MAN: the next block's
  first unit, averaged, into a head).

`plot_blocks(model, to_file)` draws it with matplotlib: a column per block,
its units top to bottom, its head and loss below, a red bar where the
gradient is cut, orange arrows for links.

Example:

```python
model = kl.build_model("resnet8", "backlink", num_blocks=2, propagation_length=1, alpha=0.5)
graph = kl.block_graph(model)
[(edge.source, edge.target) for edge in graph.edges if edge.kind == "link"]   # [('loss1', 'unit1')]
kl.plot_blocks(model, to_file="blocks.png")
```
"""

import dataclasses

from keras_local.graph import is_functional
from keras_local.plots import _pyplot, _save


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    kind: str  # "unit", "head", "loss", "label", "average"
    label: str
    block: int
    device: str


@dataclasses.dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # "forward", "head", "loss", "link", "label_path", "average"
    cut: bool = False


@dataclasses.dataclass
class BlockGraph:
    """The nodes and edges of `block_graph`; `nodes_of(kind)`, `edges_of(kind)` select."""

    nodes: list
    edges: list
    method: str

    def nodes_of(self, kind):
        return [node for node in self.nodes if node.kind == kind]

    def edges_of(self, kind):
        return [edge for edge in self.edges if edge.kind == kind]


def _unit_label(unit):
    """A unit's name as its user knows it: the layer that ends it (a piece of a user's model), or its own."""
    return unit.layers[-1].name if is_functional(unit) else unit.name


def block_graph(model):
    """The `BlockGraph` of `model` (a built or unbuilt `LocalModel`)."""
    nodes, edges = [], []
    method = model.method
    blocks = model.blocks
    devices = list(model.devices) if model.devices else ["default device"] * len(blocks)
    first_unit, last_unit, index = [], [], 0
    for k, block in enumerate(blocks):
        first_unit.append(f"unit{index}" if block.units else None)
        for unit in block.units:
            nodes.append(Node(f"unit{index}", "unit", _unit_label(unit), k, devices[k]))
            if index > 0:
                entering = unit is block.units[0]
                previous = next((node for node in reversed(nodes[:-1]) if node.kind == "unit"), None)
                if previous is not None:
                    edges.append(Edge(previous.name, f"unit{index}", "forward", entering and method.cut_gradients))
            index += 1
        last_unit.append(f"unit{index - 1}" if block.units else None)
        if block.head is not None:
            nodes.append(Node(f"head{k}", "head", _head_label(block.head), k, devices[k]))
            source = last_unit[k] if block.units else _last_before(last_unit, k)
            if source is not None:
                edges.append(Edge(source, f"head{k}", "head", cut=not block.units and method.cut_gradients))
            nodes.append(Node(f"loss{k}", "loss", f"L{k}", k, devices[k]))
            edges.append(Edge(f"head{k}", f"loss{k}", "loss"))
    for k, block in enumerate(blocks[:-1]):
        average = getattr(block.head, "average", None)
        if average is not None and first_unit[k + 1] is not None:  # MAN: the next block's first unit, averaged
            label = next(node.label for node in nodes if node.name == first_unit[k + 1])
            nodes.append(Node(f"average{k}", "average", f"EMA of {label}", k, devices[k]))
            edges.append(Edge(first_unit[k + 1], f"average{k}", "average"))
            edges.append(Edge(f"average{k}", f"head{k}", "average"))
    for k in range(len(blocks) - 1):
        linked = min(method.linked_units(k, len(blocks)), len(blocks[k].units))
        if linked and f"loss{k + 1}" in {node.name for node in nodes}:
            start = int(last_unit[k][len("unit") :]) - linked + 1
            for position in range(start, start + linked):
                edges.append(Edge(f"loss{k + 1}", f"unit{position}", "link"))
    for j, label_block in enumerate(model.extra_blocks):  # Associated Learning's label path
        nodes.append(Node(f"label{j}", "label", label_block.name, j, devices[min(j, len(blocks) - 1)]))
        if j:
            edges.append(Edge(f"label{j - 1}", f"label{j}", "label_path"))
        if f"loss{j}" in {node.name for node in nodes}:
            edges.append(Edge(f"label{j}", f"loss{j}", "label_path"))
    composed = "".join(f"+{option}" for option in ("man", "hpff") if getattr(method, option, False) is True)
    return BlockGraph(nodes, edges, method.name + composed)


def _last_before(last_unit, k):
    return next((name for name in reversed(last_unit[:k]) if name is not None), None)


def _head_label(head):
    if is_functional(head):  # the user's own classifier
        return f"{head.name} ({', '.join(layer.name for layer in head.layers[1:])})"
    return type(head).__name__


COLOURS = {"unit": "#dbe9f6", "head": "#fde5c4", "loss": "#f6d0d0", "label": "#e6dcf3", "average": "#d9efd9"}


def plot_blocks(model, to_file="blocks.png", max_units_per_block=8):
    """Draws `block_graph(model)` into the PNG `to_file` (a column per block;
    at most `max_units_per_block` units shown per block, the first and the
    last ones, with the count of those left out); returns the graph."""
    plt = _pyplot()
    graph = block_graph(model)
    num_blocks = len(model.blocks)
    shown, positions = {}, {}
    for k in range(num_blocks):
        units = [node for node in graph.nodes_of("unit") if node.block == k]
        linked = {edge.target for edge in graph.edges_of("link")}
        keep = units if len(units) <= max_units_per_block else _kept(units, linked, max_units_per_block)
        shown[k] = keep
        for row, node in enumerate(keep):
            positions[node.name] = (k, -row)
    rows = max((len(keep) for keep in shown.values()), default=1)
    for node in graph.nodes:
        if node.kind == "head":
            positions[node.name] = (node.block, -rows - 0.3)
        elif node.kind == "loss":
            positions[node.name] = (node.block, -rows - 1.3)
        elif node.kind == "average":
            positions[node.name] = (node.block + 0.45, -rows - 0.3)
        elif node.kind == "label":
            positions[node.name] = (node.block, -rows - 2.5)
    width = max(num_blocks, len(graph.nodes_of("label"))) * 2.7 + 0.5
    figure, axis = plt.subplots(figsize=(width, 0.55 * (rows + 4) + 1.2))
    for node in graph.nodes:
        if node.name not in positions:
            continue
        x, y = positions[node.name]
        axis.text(
            x * 2.7,
            y,
            _short(node.label),
            ha="center",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.3", "facecolor": COLOURS[node.kind], "edgecolor": "#555555"},
        )
    for k in range(num_blocks):
        device = graph.nodes_of("unit")[0].device if not model.devices else model.devices[k]
        axis.text(k * 2.7, 1.0, f"block {k}\n{device}", ha="center", va="center", fontsize=9, weight="bold")
        units = [node for node in graph.nodes_of("unit") if node.block == k]
        if len(units) > len(shown[k]):
            axis.text(k * 2.7 + 1.05, -len(shown[k]) / 2, f"({len(units)} units,\n{len(shown[k])} shown)", fontsize=7)
    styles = {
        "forward": ("#333333", "-", "arc3,rad=0"),
        "head": ("#333333", "-", "arc3,rad=0"),
        "loss": ("#333333", "-", "arc3,rad=0"),
        "link": ("#e07b00", "--", "arc3,rad=-0.35"),
        "label_path": ("#7a4fb5", "-", "arc3,rad=0.1"),
        "average": ("#2e8b2e", ":", "arc3,rad=0.2"),
    }
    for edge in graph.edges:
        if edge.source not in positions or edge.target not in positions:
            continue
        (x0, y0), (x1, y1) = positions[edge.source], positions[edge.target]
        colour, line, connection = styles[edge.kind]
        axis.annotate(
            "",
            xy=(x1 * 2.7, y1 + (0.18 if y1 < y0 else -0.18)),
            xytext=(x0 * 2.7, y0 - (0.18 if y1 < y0 else -0.18)),
            arrowprops={"arrowstyle": "->", "color": colour, "linestyle": line, "connectionstyle": connection},
        )
        if edge.cut:
            middle = ((x0 + x1) * 2.7 / 2, (y0 + y1) / 2)
            axis.plot([middle[0] - 0.25, middle[0] + 0.25], [middle[1], middle[1]], color="#c62828", linewidth=3)
            axis.text(middle[0], middle[1] + 0.22, "gradient cut", color="#c62828", fontsize=7, ha="center")
    axis.set_xlim(-1.6, (num_blocks - 1) * 2.7 + 1.9)
    axis.set_ylim(-rows - 3.2 if graph.nodes_of("label") else -rows - 2.0, 1.6)
    axis.axis("off")
    axis.set_title(f"{model.name}: {graph.method}", fontsize=10)
    _save(figure, to_file)
    return graph


def _kept(units, linked, limit):
    """The units a column shows: the first ones, the linked tail and the last ones, `limit` in all."""
    tail = [node for node in units if node.name in linked]
    head_count = max(1, limit - max(len(tail), 2))
    kept = units[:head_count] + [node for node in units[head_count:] if node.name in linked or node is units[-1]]
    return kept[:limit] if len(kept) > limit else kept


def _short(text, width=26):
    return text if len(text) <= width else text[: width - 1] + "…"
