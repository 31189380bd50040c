"""InfoPro's logs: a contrast head's embedding is not scored as a class prediction."""

import keras
import pytest
from conftest import tiny_batch

import keras_local as kl

SHAPE, CLASSES = (8, 8, 3), 5


@pytest.mark.parametrize("aux_loss, scored", [("contrast", ["acc_2"]), ("cross_entropy", ["acc_0", "acc_1", "acc_2"])])
def test_only_heads_that_score_the_classes_log_an_accuracy(aux_loss, scored):
    model = kl.build_model("resnet8", "infopro", num_blocks=3, input_shape=SHAPE, num_classes=CLASSES,
                           aux_loss=aux_loss)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    x, y = tiny_batch(input_shape=SHAPE, num_classes=CLASSES)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert sorted(key for key in logs if key.startswith("acc_")) == scored
    assert sorted(key for key in logs if key.startswith("loss_")) == ["loss_0", "loss_1", "loss_2"]
    evaluation = model.evaluate(x, y, return_dict=True, verbose=0)
    assert sorted(key for key in evaluation if key.startswith("acc_")) == scored
