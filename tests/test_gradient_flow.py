"""The picture of where each gradient goes (`kl.block_graph`, `kl.plot_blocks`): its structure per method."""

import pytest
from own_models import residual_model

import keras_local as kl
from keras_local import cli


def _graph(method, **options):
    return kl.block_graph(kl.build_model(residual_model(), method, cuts=["stem_relu", "res2_add"], **options))


def _units(graph):
    return {node.name: node.label for node in graph.nodes_of("unit")}


def test_gll_cuts_the_gradient_between_every_two_blocks_and_gives_each_a_head_and_a_loss():
    graph = _graph("gll")
    units = _units(graph)
    assert list(units.values()) == ["stem", "stem_bn", "stem_relu", "res1_add", "res1_out", "res2_add"] + [
        "res2_out",
        "mix_concat",
    ]  # the user's layer names
    cuts = [(units[edge.source], units[edge.target]) for edge in graph.edges if edge.cut]
    assert cuts == [("stem_relu", "res1_add"), ("res2_add", "res2_out")]
    assert [edge.kind for edge in graph.edges if edge.source == "head2"] == ["loss"]
    assert graph.nodes_of("head")[-1].label.startswith("residual_classifier (pool, logits)")
    assert not graph.edges_of("link") and not graph.edges_of("label_path") and not graph.edges_of("average")


def test_bp_cuts_nothing():
    graph = _graph("bp")
    assert not any(edge.cut for edge in graph.edges) and [node.name for node in graph.nodes_of("loss")] == ["loss2"]


@pytest.mark.parametrize(
    "length, linked", [(1, {"stem_relu", "res2_add"}), (2, {"stem_bn", "stem_relu", "res1_out", "res2_add"})]
)
def test_backlink_links_the_next_loss_into_the_last_l_units_of_each_block(length, linked):
    graph = _graph("backlink", propagation_length=length, alpha=0.5)
    units = _units(graph)
    assert {units[edge.target] for edge in graph.edges_of("link")} == linked
    assert {edge.source for edge in graph.edges_of("link") if units[edge.target] == "stem_relu"} == {"loss1"}
    assert not _graph("backlink", propagation_length=length, alpha=1.0).edges_of("link")  # α = 1 is gll


def test_hpff_links_the_next_loss_into_the_whole_block():
    graph = _graph("gll", hpff=True)
    units = _units(graph)
    block0 = {"stem", "stem_bn", "stem_relu"}
    assert {units[edge.target] for edge in graph.edges_of("link") if edge.source == "loss1"} == block0


def test_associated_learnings_label_path_reaches_every_blocks_loss():
    graph = _graph("associated")
    labels = graph.nodes_of("label")
    assert len(labels) == 3
    path = graph.edges_of("label_path")
    assert {(edge.source, edge.target) for edge in path} >= {("label0", "label1"), ("label1", "label2")}
    assert {edge.target for edge in path if edge.target.startswith("loss")} == {"loss0", "loss1", "loss2"}


def test_man_averages_the_next_blocks_first_unit_into_each_head():
    graph = _graph("gll", man=True)
    units = _units(graph)
    averaged = [(units[edge.source], edge.target) for edge in graph.edges_of("average") if edge.source in units]
    assert averaged == [("res1_add", "average0"), ("res2_out", "average1")]
    assert ("average0", "head0") in {(edge.source, edge.target) for edge in graph.edges_of("average")}


def test_every_node_names_its_blocks_device():
    model = kl.build_model(residual_model(), "gll", num_blocks=2, devices=["/cpu:0", "/cpu:0"])
    assert {node.device for node in kl.block_graph(model).nodes} == {"/cpu:0"}
    assert {node.device for node in _graph("gll").nodes} == {"default device"}


def test_plot_blocks_and_the_plot_command_write_the_picture(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    model = kl.build_model(residual_model(), "backlink", num_blocks=3, propagation_length=1, alpha=0.5)
    graph = kl.plot_blocks(model, to_file=tmp_path / "blocks.png")
    assert (tmp_path / "blocks.png").read_bytes()[:4] == b"\x89PNG" and graph.edges_of("link")
    code = cli.main(
        ["plot", "--set", 'architecture="resnet8"', "--set", "num_blocks=2", "--output", str(tmp_path / "c.png")]
    )
    assert code == 0 and (tmp_path / "c.png").exists()
    assert capsys.readouterr().out.strip().endswith("2 blocks of resnet8 under gll, 1 gradient cuts, 0 linked units")
