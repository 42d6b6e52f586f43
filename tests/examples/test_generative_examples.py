"""The generative examples: DCGAN's step is the book's loop; style transfer lowers its loss; one-line bad input.
(A GAN-shaped run killed after a checkpoint resumes bit-identical: tests/test_train_core.py.)"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from dlcore import runner


def test_style_transfer_quick_lowers_the_total_loss_tenfold(quick_run):
    report, text = quick_run("style_transfer")
    m = report["metrics"]
    assert m["initial_loss"] >= 10 * m["final_loss"], text
    assert "Iteration: 50, loss:" in text and "random weights" in text


def test_style_layers_map_to_dlcores_vgg19_and_bad_ones_are_one_line():
    from one_line import raises_one_line

    st = runner.get("style_transfer")
    # ReLUs are read as they are; the hooked convs 21 and 25 as the in-place ReLU after them left them
    assert st.feature_layers((1, 6, 11, 20, 25)) == [1, 6, 11, 20, 26] and st.feature_layers((21,)) == [22]
    raises_one_line(lambda: st.feature_layers((1, 37)), "37", "outside VGG-19", "0 to 36")
    raises_one_line(lambda: st.feature_layers((-1,)), "-1", "outside VGG-19")


def test_horse2zebra_finds_and_loads_a_weights_file_named_as_the_books(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from dlcore import models, weights
    from test_gan_models import TorchResNetGenerator

    h2z = runner.get("horse2zebra")
    monkeypatch.setenv("DLCORE_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("DLCORE_DATA", str(tmp_path / "empty-cache"))
    assert weights.find_file(h2z.WEIGHTS_FILE) is None
    tg = TorchResNetGenerator(ngf=8, n_blocks=2)
    torch.save(tg.state_dict(), tmp_path / h2z.WEIGHTS_FILE)
    path = weights.find_file(h2z.WEIGHTS_FILE)
    assert path == tmp_path / h2z.WEIGHTS_FILE
    g = weights.load(models.create("cyclegan_generator", ngf=8, n_blocks=2), path)
    g.eval()
    x = np.random.default_rng(0).uniform(0, 1, size=(1, 12, 16, 3)).astype(np.float32)
    with torch.no_grad():
        want = tg.eval()(torch.tensor(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(g(x)), want, atol=1e-5)


def test_dcgan_step_is_the_books_training_loop():
    """Three steps of the example's gan_step against the book's torch loop (BCELoss on the sigmoid, D on real
    then on fake.detach(), optimizerD.step(), G through the updated D, optimizerG.step()), same weights,
    data and noise: the logged figures and every tensor of both state dicts agree."""
    torch = pytest.importorskip("torch")
    import jax.numpy as jnp

    from dlcore import models, optim, weights
    from dlcore.train import TrainState
    from test_gan_models import TorchDiscriminator, TorchGenerator

    dcgan = runner.get("dcgan")
    width, b, nz = 8, 4, dcgan.NZ
    torch.manual_seed(0)
    tg, td = TorchGenerator(ngf=width), TorchDiscriminator(ndf=width)
    g = weights.load_state_dict(models.create("dcgan_generator", ngf=width), tg.state_dict())
    d = weights.load_state_dict(models.create("dcgan_discriminator", ndf=width), td.state_dict())
    adam = optim.adam(dcgan.LR, betas=dcgan.BETAS)
    states = {"G": TrainState.create(g, adam), "D": TrainState.create(d, adam)}
    opt_d = torch.optim.Adam(td.parameters(), lr=dcgan.LR, betas=dcgan.BETAS)
    opt_g = torch.optim.Adam(tg.parameters(), lr=dcgan.LR, betas=dcgan.BETAS)
    bce, ones, zeros = torch.nn.BCELoss(), torch.ones(b), torch.zeros(b)
    step, rng = jax.jit(dcgan.gan_step), np.random.default_rng(0)
    for i in range(3):
        x = rng.uniform(0, 1, size=(b, 64, 64, 3)).astype(np.float32)
        key = jax.random.PRNGKey(i)
        states, logs, _ = step(states, {"x": jnp.asarray(x), "w": jnp.ones(b)}, key, None)
        z = torch.tensor(np.asarray(jax.random.normal(key, (b, nz)))).view(b, nz, 1, 1)
        td.zero_grad()
        out_real = td(torch.tensor((x - 0.5) / 0.5).permute(0, 3, 1, 2))
        err_real = bce(out_real, ones)
        err_real.backward()
        fake = tg(z)
        out_fake = td(fake.detach())
        err_fake = bce(out_fake, zeros)
        err_fake.backward()
        opt_d.step()
        tg.zero_grad()
        out_g = td(fake)
        err_g = bce(out_g, ones)
        err_g.backward()
        opt_g.step()
        book = {"loss_d": (err_real + err_fake).item(), "loss_g": err_g.item(), "d_x": out_real.mean().item(),
                "d_g_z1": out_fake.mean().item(), "d_g_z2": out_g.mean().item()}
        for k, v in book.items():
            assert float(logs[k]) == pytest.approx(v, rel=1e-5, abs=1e-6), (i, k)
    # Adam divides by sqrt(v): a gradient entry near 0 turns its float32 rounding into a step of up to lr;
    # measured after three steps: 1.1e-5 at most over both state dicts, hence 2e-5
    for name, tmodel in (("G", tg), ("D", td)):
        sd = weights.state_dict(states[name].model())
        for k, v in tmodel.state_dict().items():
            if v.dtype.is_floating_point:
                np.testing.assert_allclose(sd[k], v.numpy(), rtol=1e-5, atol=2e-5, err_msg=f"{name} {k}")
