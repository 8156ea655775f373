"""Overfitting said in words: a trial saw validation accuracy fall from 0.67 to 0.44 over 8 epochs on 72
pictures while training reached 1.0, and the page said only "best 66.7% (epoch 1)"."""
from __future__ import annotations

from transfer_core.core.advice import overfitting
from transfer_core.core.events import EpochEnd


def curve(train_acc, val_acc, train_loss=None, val_loss=None) -> list[EpochEnd]:
    n = len(train_acc)
    train_loss = train_loss or [1.0 / (i + 1) for i in range(n)]
    val_loss = val_loss or [1.0] * n
    return [EpochEnd(run_id="r", time=0.0, epoch=i + 1, epochs=n, train_loss=train_loss[i], val_loss=val_loss[i],
                     train_accuracy=train_acc[i], val_accuracy=val_acc[i]) for i in range(n)]


def test_the_trial_that_memorised_its_pictures_is_called_overfitting():
    words = overfitting(curve([0.6, 0.8, 0.9, 0.95, 1, 1, 1, 1], [0.67, 0.6, 0.55, 0.5, 0.5, 0.47, 0.44, 0.44]))
    assert words and "after epoch 1" in words and "from 67% to 44%" in words and "add more pictures" in words


def test_a_healthy_run_and_small_wobbles_are_not():
    assert overfitting(curve([0.6, 0.8, 0.9, 0.95], [0.7, 0.8, 0.9, 0.92])) is None
    assert overfitting(curve([0.6, 0.8, 0.9, 0.95], [0.7, 0.8, 0.9, 0.88])) is None  # 2 points: noise
    assert overfitting(curve([0.5, 0.52, 0.55], [0.6, 0.5, 0.45])) is None  # not learning either: not this
    assert overfitting(curve([0.9], [0.5])) is None


def test_a_validation_loss_that_keeps_rising_is_overfitting_too():
    words = overfitting(curve([0.8, 0.95, 0.99], [0.9, 0.9, 0.89], train_loss=[0.5, 0.2, 0.1],
                              val_loss=[0.3, 0.4, 0.6]))
    assert words and "after epoch 1" in words


def test_the_words_name_the_model_the_run_kept():
    epochs = curve([0.8, 0.95, 0.99], [0.9, 0.9, 0.8])
    assert "The best epoch (1) is the model kept." in overfitting(epochs)
    assert "The first model (the new classifier alone, before any epoch) is the model kept." in \
        overfitting(epochs, kept_epoch=0)
