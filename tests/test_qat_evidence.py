"""The data and models of bench/qat_evidence.py (bench/qat_models.py): deterministic offline data,
an untrained LM that scores ln V, the BN folding and weight emulation that chose the CNN, and
the engine graph of the LM equal to PyTorch. Seconds in all; the table itself is
`python bench/qat_evidence.py --quick`."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import qat_models as qm  # noqa: E402

import qengine  # noqa: E402

torch.set_num_threads(1)


def test_digits_split_is_fixed():
    a, b = qm.digits_split(), qm.digits_split()
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    xtr, xte, ytr, yte = a
    assert xtr.shape == (1257, 1, 8, 8) and xte.shape == (540, 1, 8, 8)
    assert xtr.dtype == np.float32 and 0 <= xtr.min() and xtr.max() <= 1
    assert np.bincount(yte).min() >= 52          # stratified: 10 classes, 52-55 each


def test_noisy_digits_are_fixed_perturbations_of_the_test_split():
    xtr, xte, ytr, yte = qm.noisy_digits(copies=2)
    again = qm.noisy_digits(copies=2)
    np.testing.assert_array_equal(xte, again[1])
    clean = qm.digits_split()
    np.testing.assert_array_equal(xtr, clean[0])             # training images stay clean
    np.testing.assert_array_equal(yte, np.tile(clean[3], 2))
    assert xte.shape == (1080, 1, 8, 8) and 0 <= xte.min() and xte.max() <= 1
    assert not np.array_equal(xte[:540], xte[540:])            # two different perturbations
    # shift 0 and no noise give the images back
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(qm.perturb(clean[1], rng, shift=0, noise=0.0), clean[1])


def test_char_corpus_is_fixed_and_encoded_in_vocab():
    text, desc = qm.text_corpus()
    again, desc2 = qm.text_corpus()
    assert text == again and desc == desc2
    assert 1_000_000 <= len(text) <= 3_500_000, desc
    codes = qm.encode(text)
    assert codes.shape == (len(text),) and 0 <= codes.min() and codes.max() < qm.V
    assert qm.V == 98
    np.testing.assert_array_equal(qm.encode("a\n\t\u00e9"),
                                  [qm.VOCAB.index("a"), 1, 0, qm.V - 1])
    train, test = qm.char_split(codes)
    assert len(train) == int(0.9 * len(codes)) and len(train) + len(test) == len(codes)
    w = qm.lm_windows(test[:1001], bptt=100)
    assert w.shape == (101, 10)
    np.testing.assert_array_equal(w[:, 3], test[300:401])


def test_untrained_lm_scores_ln_v_and_training_lowers_it():
    _, test = qm.char_split(qm.encode(qm.text_corpus()[0]))
    windows = qm.lm_windows(test[:5001], bptt=50)
    torch.manual_seed(0)
    big = qm.CharLSTM(qm.V, 256).eval()       # the table's size: logits near 0 at init
    loss = qm.nats_per_char(qm.lm_logits(qm.torch_run(big), windows), windows[1:])
    assert abs(loss - math.log(qm.V)) < 0.02
    model = qm.CharLSTM(qm.V, 32).eval()
    loss0 = qm.nats_per_char(qm.lm_logits(qm.torch_run(model), windows), windows[1:])
    qm.train_lm(model, test, steps=30, bptt=50, batch=8, lr=1e-2, seed=0)
    loss1 = qm.nats_per_char(qm.lm_logits(qm.torch_run(model), windows), windows[1:])
    assert loss1 < loss0 - 0.5          # past the unigram entropy of the text in 30 steps


def test_nats_per_char_is_cross_entropy():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((7, 3, qm.V)).astype(np.float32)
    t = rng.integers(0, qm.V, size=(7, 3))
    ref = torch.nn.functional.cross_entropy(torch.from_numpy(z).reshape(-1, qm.V),
                                            torch.from_numpy(t).reshape(-1))
    assert abs(qm.nats_per_char(z, t) - float(ref)) < 1e-5


def test_lm_engine_graph_equals_torch():
    torch.manual_seed(1)
    model = qm.CharLSTM(qm.V, 48).eval()
    x = qm.one_hot(np.random.default_rng(1).integers(0, qm.V, size=(20, 3)))
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    g = qengine.from_torch_state_dict(sd, qm.lm_state_dict_layers(model))
    y = qengine.Session(g).run({"input": x})["output"]
    ref = qm.torch_run(model)(x)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5)


def test_fold_bn_and_weight_emulation():
    torch.manual_seed(2)
    model = qm.DigitsCNN(4)
    for m in model.modules():                  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    x = qm.digits_split()[1][:64]
    ref = qm.torch_logits(model, x)
    np.testing.assert_allclose(qm.torch_logits(qm.fold_bn(model), x), ref, rtol=0, atol=1e-5)
    w8 = qm.torch_logits(qm.fake_quant_weights(model, 8), x)
    w4 = qm.fake_quant_weights(model, 4)
    err8 = np.abs(w8 - ref).max()
    err4 = np.abs(qm.torch_logits(w4, x) - ref).max()
    assert 0 < err8 < err4
    for m in w4.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            w = m.weight.detach().reshape(m.weight.shape[0], -1)
            s = w.abs().amax(1, keepdim=True) / 7
            q = w / s
            assert torch.allclose(q, q.round(), atol=1e-4) and q.abs().max() <= 7 + 1e-4
