"""The generative examples: a DCGAN run killed after a checkpoint resumes bit-identical; style transfer lowers
its loss; one-line bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from dlcore import checkpoint, runner


def _weights(directory):
    """Epoch and every array of both models' states (params, batch statistics, Adam moments, steps)."""
    tree, meta = checkpoint.load(directory)
    return meta["epoch"], [np.asarray(a) for a in jax.tree.leaves(tree["state"])]


def test_killing_dcgan_and_resuming_ends_with_the_same_weights(tmp_path):
    args = [sys.executable, "-m", "dlcore.cli", "run", "dcgan", "--quick", "--epochs", "2", "--no-progress"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", DLCORE_PLOTS=str(tmp_path / "plots"))
    # The uninterrupted run fills a compilation cache that the resumed run reads (it would otherwise spend
    # seconds compiling the same step); the killed run, which may die mid-write, keeps out of it. The first
    # two runs go side by side: each spends most of its time in one thread (imports, compiling).
    cached = dict(env, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
                  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    full = subprocess.Popen(args + ["--checkpoint", str(tmp_path / "full")], env=cached,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # a run killed (SIGKILL, no chance to clean up) once its first checkpoint exists
    proc = subprocess.Popen(args + ["--checkpoint", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not checkpoint.steps(tmp_path / "killed") and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = checkpoint.steps(tmp_path / "killed")
    assert list(done) == [1], f"the kill should land mid-run, checkpoints: {done}"
    assert full.wait(timeout=180) == 0, full.stderr.read()[-2000:]
    resumed = subprocess.run(args + ["--checkpoint", str(tmp_path / "killed"), "--resume"], env=cached,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "[2/2] Loss_D" in resumed.stdout and "[1/2]" not in resumed.stdout  # on from epoch 1
    e_full, w_full = _weights(tmp_path / "full")
    e_res, w_res = _weights(tmp_path / "killed")
    assert e_full == e_res == 2 and len(w_full) == len(w_res)
    for a, b in zip(w_full, w_res):
        np.testing.assert_array_equal(a, b)


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
