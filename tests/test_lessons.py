"""The lesson measures against hand-made cases whose answer is known, and `python -m vaelab lessons` end to end."""

import math

import numpy as np
import pytest
import torch

from vaelab import lessons
from vaelab.cli import main
from vaelab.data import load_data
from vaelab.digit_judge import train_judge
from vaelab.lessons import Check, LessonReport
from vaelab.training import Trainer
from vaelab.variants import VARIANTS, sparse


def test_share_in_band_counts_units_between_half_and_twice_rho():
    rho_hat = np.array([0.024, 0.025, 0.05, 0.1, 0.101, 0.5])  # 0.025 and 0.1 are the band's ends
    assert lessons.share_in_band(rho_hat, 0.05) == pytest.approx(3 / 6)


def test_share_in_band_of_a_model_whose_units_are_forced_to_a_known_mean():
    """A sparse model whose code units are sigmoid(b) with zero weights has rho_hat_j = sigmoid(b_j) exactly."""
    torch.manual_seed(0)
    model = sparse.Model(sparse.Config(), input_dim=16)
    linear = model.encoder[0]
    with torch.no_grad():
        linear.weight.zero_()
        targets = torch.tensor([0.05] * 100 + [0.3] * 44)  # 100 of the 144 units at rho, 44 far above
        linear.bias.copy_(torch.logit(targets))
    rho_hat = model.mean_activations(torch.rand(50, 16))
    assert torch.allclose(rho_hat, targets, atol=1e-6)
    assert lessons.share_in_band(rho_hat, 0.05) == pytest.approx(100 / 144)


def test_active_share_is_the_mean_share_of_units_above_one_half():
    codes = np.array([[0.9, 0.1, 0.2, 0.7], [0.1, 0.1, 0.6, 0.5]])  # 2 of 4 on, then 1 of 4 (0.5 is not above)
    assert lessons.active_share(codes) == pytest.approx((2 / 4 + 1 / 4) / 2)


def test_dead_unit_share_counts_units_zero_for_every_image():
    codes = np.zeros((5, 4))
    codes[0, 0] = 1.0
    codes[3, 2] = -0.5  # negative but not zero: alive
    assert lessons.dead_unit_share(codes) == pytest.approx(2 / 4)


def test_class_coverage_and_normalised_entropy():
    labels = np.array([0] * 50 + [1] * 49 + [2])  # class 2 has 1% of the labels
    assert lessons.class_coverage(labels, 10, 0.02) == 2
    assert lessons.class_coverage(labels, 10, 0.01) == 3
    assert lessons.normalised_entropy(np.repeat(np.arange(10), 7), 10) == pytest.approx(1.0)
    assert lessons.normalised_entropy(np.full(30, 4), 10) == pytest.approx(0.0)
    p = np.array([0.5, 0.5])  # two classes equally: log 2 / log 10
    assert lessons.normalised_entropy(np.array([3, 7]), 10) == pytest.approx(-(p * np.log(p)).sum() / math.log(10))


def test_variance_kept_is_one_for_a_perfect_copy_and_zero_for_the_mean_image():
    x = torch.rand(20, 30)
    assert lessons.variance_kept(x, x) == pytest.approx(1.0)
    assert lessons.variance_kept(x, x.mean(dim=0, keepdim=True).expand_as(x)) == pytest.approx(0.0, abs=1e-6)


def test_mean_jacobian_norm_matches_the_closed_form_of_a_sigmoid_layer():
    from vaelab import losses
    from vaelab.variants import contractive

    torch.manual_seed(1)
    model = contractive.Model(contractive.Config(code_size=12), input_dim=20)
    x = torch.rand(8, 20)
    h = model.encoder(x)
    closed = losses.contractive_penalty_sigmoid(h, model.encoder[0].weight).mean()
    assert lessons.mean_jacobian_norm(model, x) == pytest.approx(float(closed.detach()), rel=1e-5)


def test_check_goals_and_reports():
    assert Check("a", 0.9, ">=", 0.8).passed
    assert not Check("a", 0.7, ">=", 0.8).passed
    assert Check("b", 0.1, "<=", 0.2).passed
    assert not Check("b", float("nan"), "<=", 0.2).passed
    assert "goal >= 0.8" in str(Check("a", 0.9, ">=", 0.8))
    assert not LessonReport("ae", "", []).passed  # no check: nothing was shown
    assert not LessonReport("ae", "", [Check("a", 1, ">=", 0)], error="diverged").passed


def test_every_variant_has_a_measure():
    assert set(lessons.MEASURES) == set(VARIANTS)


def test_the_judge_recognises_real_digits():
    data = load_data("digits")
    judge = train_judge(data, seed=0)
    assert judge.test_accuracy > 0.85
    labels, confidence = judge.classify(data.test.images[:50])
    assert labels.shape == (50,) and bool(((confidence > 0) & (confidence <= 1)).all())
    assert train_judge(data, seed=0) is judge  # one judge per data and seed


def test_a_judged_measure_fails_on_a_generator_of_one_digit_and_passes_on_real_digits():
    """The binary-VAE measure (entropy of the judged digits of prior samples) on a stand-in model whose samples are
    one repeated real digit, then all real digits in turn."""
    data = load_data("digits")

    class Stub(torch.nn.Module):
        def __init__(self, images):
            super().__init__()
            self.images = images

        def sample(self, n, generator=None):
            return self.images[torch.arange(n) % len(self.images)]

    class FakeTrainer:
        variant = "binary-vae"

    for images, expect in ((data.test.images[:1], False), (data.test.images[:200], True)):
        trainer = FakeTrainer()
        trainer.model = Stub(images)
        ctx = {"trainer": trainer, "data": data, "seed": 0, "device": "cpu", "notes": {}, "companion_seconds": 0.0}
        (check,) = lessons.MEASURES["binary-vae"](ctx)
        assert check.passed is expect, check


def test_measure_lesson_reads_the_model_not_the_history():
    data = load_data("digits")
    trainer = Trainer("ksparse", VARIANTS["ksparse"].config_cls(epochs=1, code_size=16, k=4), data, seed=0)
    trainer.run()
    trainer.history.clear()  # the measure must not need it
    report = lessons.measure_lesson(trainer, data)
    (check,) = report.checks
    codes = trainer.model.encode(lessons.probe_images(data)[0]).detach()
    assert check.value == pytest.approx(lessons.dead_unit_share(codes.numpy()))


def test_lessons_command_runs_every_variant_end_to_end(capsys):
    status = main(["lessons", "--dataset", "digits", "--epochs", "1"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("lessons on digits")
    for key in VARIANTS:
        assert any(line.startswith(key + " ") and ("PASS" in line or "FAIL" in line) for line in out), key
    passed, failed = (int(w) for w in out[-1].replace(",", "").split()[::2])
    assert out[-1] == f"{passed} passed, {failed} failed" and passed + failed == len(VARIANTS)
    assert status == (1 if failed else 0)


def test_lessons_command_refuses_an_unknown_variant_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lessons", "nope", "--dataset", "digits"])
    assert exit_info.value.code == 2
    assert "nope" in capsys.readouterr().err


# ---------------------------------------------------------------- the recipe elements the defaults use
def test_annealed_k_falls_linearly_from_the_code_size_to_k():
    from vaelab.variants.ksparse import annealed_k

    assert [annealed_k(10, 144, 10.0, e) for e in (0.0, 5.0, 10.0, 30.0)] == [144, 77, 10, 10]
    assert annealed_k(10, 144, 0.0, 0.0) == 10  # no annealing


def test_the_trainer_tells_the_model_its_progress_and_the_ksparse_code_follows_the_schedule():
    from vaelab.variants import ksparse

    data = load_data("digits")
    config = ksparse.Config(code_size=16, k=4, anneal_epochs=2.0, epochs=3, batch_size=500)
    trainer = Trainer("ksparse", config, data, seed=0)
    seen = []
    original = trainer.model.set_training_progress
    trainer.model.set_training_progress = lambda e: (seen.append(e), original(e))
    trainer.advance(max_steps=1)
    assert seen == [0.0] and trainer.model.current_k == 16  # all units at the start
    trainer.run()
    assert seen == [s / trainer.steps_per_epoch for s in range(trainer.total_steps)]
    assert trainer.model.current_k == 4
    codes = trainer.model.encode(data.test.images[:20])
    assert bool(((codes != 0).sum(dim=1) <= 4).all())
    fresh = ksparse.Model(config, input_dim=data.input_dim)  # loaded, not trained here: the configured k
    assert fresh.current_k == 4


def test_the_ksparse_encoder_is_centred_on_the_training_mean_and_old_checkpoints_load_uncentred():
    from vaelab.variants import ksparse

    data = load_data("digits")
    trainer = Trainer("ksparse", ksparse.Config(code_size=16, k=4, epochs=1), data, seed=0)
    model = trainer.model
    assert torch.allclose(model.encoder.input_mean, data.train.images.mean(dim=0))
    x = data.test.images[:5]
    linear = model.encoder[0]
    assert torch.allclose(model.encoder(x), linear(x - data.train.images.mean(dim=0)), atol=1e-6)
    old = {k: v for k, v in model.state_dict().items() if k != "encoder.input_mean"}  # saved before centring
    restored = ksparse.Model(model.config, input_dim=data.input_dim)
    restored.load_state_dict(old)
    assert torch.equal(restored.encoder.input_mean, torch.zeros(data.input_dim))
    off = Trainer("ksparse", ksparse.Config(code_size=16, k=4, epochs=1, center_input=False), data, seed=0)
    assert torch.equal(off.model.encoder.input_mean, torch.zeros(data.input_dim))


def test_weight_decay_is_the_gradient_of_half_its_weight_times_the_squared_weight_matrices():
    """Three steps with weight_decay equal three steps whose objective adds (wd / 2) sum ||W||^2 over the weight
    matrices (biases excluded), without decay in the optimizer."""
    from vaelab.variants import ae

    data = load_data("digits")
    wd = 0.05
    config = ae.Config(hidden_sizes=(8,), code_size=4, epochs=1, weight_decay=wd)
    decayed = Trainer("ae", config, data, seed=0)
    assert [g["weight_decay"] for g in decayed.optimizer.param_groups] == [wd, 0.0]
    explicit = Trainer("ae", config.replace(weight_decay=0.0), data, seed=0)
    assert len(explicit.optimizer.param_groups) == 1
    objective = explicit.model.training_objective

    def with_l2(x, y=None):
        value, terms = objective(x, y)
        l2 = sum(p.pow(2).sum() for p in explicit.model.parameters() if p.dim() >= 2)
        return value + 0.5 * wd * l2, terms

    explicit.model.training_objective = with_l2
    decayed.advance(max_steps=3)
    explicit.advance(max_steps=3)
    for (name, a), b in zip(decayed.model.named_parameters(), explicit.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_a_state_saved_before_weight_decay_existed_resumes():
    from vaelab.variants import ae

    data = load_data("digits")
    trainer = Trainer("ae", ae.Config(code_size=4, epochs=1), data, seed=0)
    trainer.advance(max_steps=2)
    state = trainer.state_dict()
    del state["config"]["weight_decay"]  # as written by an earlier vaelab
    resumed = Trainer("ae", ae.Config(code_size=4, epochs=1), data, seed=0)
    resumed.load_state_dict(state)
    assert resumed.step == 2


def test_mse_mean_is_the_squared_error_averaged_over_pixels_as_nn_mseloss():
    from vaelab.variants import ae

    torch.manual_seed(0)
    model = ae.Model(ae.Config(reconstruction="mse-mean", code_size=3), input_dim=12)
    x = torch.rand(6, 12)
    expected = torch.nn.MSELoss()(model.reconstruct(x), x)  # mean over pixels and batch
    assert float(model.loss(x)["reconstruction"].detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_every_default_is_the_first_preset_and_every_preset_has_a_note():
    for key, info in VARIANTS.items():
        cls = info.config_cls
        first = next(iter(cls.PRESETS))
        assert cls.from_preset(first) == cls(), key  # the page's first preset is the lesson default
        assert set(cls.PRESET_NOTES) == set(cls.PRESETS), key


def test_digit_score_is_one_for_alike_images_and_the_class_count_for_clear_varied_ones():
    assert lessons.digit_score(np.eye(10)[np.arange(50) % 10]) == pytest.approx(10.0)  # clear, all digits
    assert lessons.digit_score(np.eye(10)[np.zeros(50, dtype=int)]) == pytest.approx(1.0)  # clear, one digit
    assert lessons.digit_score(np.full((50, 10), 0.1)) == pytest.approx(1.0)  # unclear
    two = np.array([[0.9, 0.1], [0.1, 0.9]])  # independent: exp(KL([0.9, 0.1] || [0.5, 0.5]))
    kl = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert lessons.digit_score(two) == pytest.approx(math.exp(kl))
