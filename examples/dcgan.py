"""DCGAN on CIFAR-10 at 64x64, Subramanian, Deep Learning with PyTorch, ch. 7, Generative adversarial networks.

Recipe (section Deep convolutional GAN, after the PyTorch examples' `dcgan`): the generator maps z of 100
N(0, 1) numbers through ConvTranspose2d 100-512 (4, 1, 0) and 512-256-128-64 (4, 2, 1) with batch norm
and ReLU, then ConvTranspose2d 64-3 and tanh, to a 64x64 image; the discriminator mirrors it with
LeakyReLU 0.2 (`dlcore.models.gan`); N(0, 0.02) weights, batch-norm weights N(1, 0.02). Images are
resized to 64x64 and normalised to [-1, 1]; BCE; one Adam(lr 2e-4, betas (0.5, 0.999)) for each network;
batch 64; 25 epochs. Each step, as the book's loop: D on a real batch against 1 and on G(z) (detached)
against 0, one D step; then G through the updated D against 1 (the non-saturating loss), one G step.
Per epoch it prints the mean losses of D and G, D(x) and D(G(z)) before and after D's step (the book's
`D_G_z1 / D_G_z2`), and saves the grid of 64 samples from one fixed noise (the book's
`fake_samples_epoch_%03d.png`). The book prints no figures for this run, only the image grids.

dlcore: one `Trainer({"G": ..., "D": ...}, {"G": adam, "D": adam}, step=gan_step)` with the two models'
own optimizers, so the run checkpoints and resumes (`--checkpoint DIR`, `--resume`) like every other
example, bit-identically. The discriminator returns a logit and the losses are BCE on logits
(`losses.gan_discriminator_loss`, `losses.gan_generator_loss`): the book's sigmoid + BCELoss, computed
without overflow. G runs once per step (one forward, its gradient through `jax.vjp`), as the book's
`fake = netG(noise)` does, so both networks' batch-norm running statistics follow the book's calls. The
fixed-noise samples are drawn with G in training mode (batch statistics), as the book's
`netG(fixed_noise)` is, without touching the training state. Batches are whole (drop_last): a padded
row would enter the batch-norm statistics.

Stand-in: without CIFAR-10, `photo_patches` (crops of the two scikit-learn sample photos at 64x64, 420
train images); under --quick 32 of them, batch 8, with quarter-width G and D (ngf = ndf = 16, the book's
own arguments) so that it runs in seconds on a CPU. Measured on the stand-in with the book's settings (25
epochs of 6 batches, 150 steps; 890 s on two busy CPU cores): Loss_D 0.094, Loss_G 5.08, D(x) 0.951,
D(G(z)) 0.040 / 0.0086 after the last epoch; the samples have become grey-green blobs with patches of
sky, a long way from pictures (the book's CIFAR-10 run takes 19,550 steps). That the step is the book's
loop is tested: three steps from the same weights, data and noise match a torch run of the book's code.

Run: `dlcore run dcgan` or `python examples/dcgan.py`.
"""

from __future__ import annotations

import jax
import numpy as np

import dlcore
from dlcore import losses, models, optim
from dlcore.data import transforms as T
from dlcore.runner import Context, Example
from dlcore.train import Callback, TrainState
from dlcore.train.step import weighted_mean

EXAMPLE = Example(
    name="dcgan",
    title="DCGAN: generator and discriminator trained in turn, fixed-noise samples every epoch",
    book="Subramanian, Deep Learning with PyTorch",
    section="ch. 7, Generative Networks, Generative adversarial networks, Deep convolutional GAN",
    source="the generator and discriminator networks, Defining loss and optimizer, Training the complete network",
    data="cifar10",
    standin="photo_patches",
    book_figures={},
)

NZ, SIZE, LR, BETAS = 100, 64, 2e-4, (0.5, 0.999)


def _as_64(x: jax.Array) -> jax.Array:
    """A batch (B, S, S, 3) in [0, 1] -> (B, 64, 64, 3) in [-1, 1] (the book's Resize(64), Normalize(0.5, 0.5))."""
    if x.shape[1:3] != (SIZE, SIZE):
        x = T.resize(x, SIZE)
    return (x - 0.5) / 0.5


def gan_step(states, batch, key, carry):
    """One step of the book's loop: D on real and fake, D's update, then G through the new D, G's update."""
    g, d = states["G"], states["D"]
    real = _as_64(batch["x"])                                   # (B, 64, 64, 3)
    w = batch["w"]
    z = jax.random.normal(key, (real.shape[0], NZ))             # (B, 100)

    def generate(params):                                      # fake = netG(noise): once per step
        gen = g.model(True, params=params)
        return gen(z), TrainState.other_variables(gen)

    fake, g_vjp, g_rest = jax.vjp(generate, g.params, has_aux=True)

    def d_loss(params):                                        # errD_real + errD_fake, two D calls
        disc = d.model(True, params=params)
        out_real, out_fake = disc(real), disc(jax.lax.stop_gradient(fake))
        loss = weighted_mean(losses.gan_discriminator_loss(out_real, out_fake), w)
        return loss, (out_real, out_fake, TrainState.other_variables(disc))

    (loss_d, (out_real, out_fake, d_rest)), grads = jax.value_and_grad(d_loss, has_aux=True)(d.params)
    d = d.apply_gradients(grads).replace(rest=d_rest)

    def g_loss(fake):                                          # errG: the fakes through the updated D
        disc = d.model(True)
        out = disc(fake)
        return weighted_mean(losses.gan_generator_loss(out), w), (out, TrainState.other_variables(disc))

    (loss_g, (out_g, d_rest)), dfake = jax.value_and_grad(g_loss, has_aux=True)(fake)
    (grads_g,) = g_vjp(dfake)
    g = g.apply_gradients(grads_g).replace(rest=g_rest)
    d = d.replace(rest=d_rest)                                 # netD(fake) in train mode moved its statistics
    mean = lambda logits: weighted_mean(jax.nn.sigmoid(logits), w)  # noqa: E731
    logs = {"loss_d": loss_d, "loss_g": loss_g, "d_x": mean(out_real), "d_g_z1": mean(out_fake),
            "d_g_z2": mean(out_g)}
    return {"G": g, "D": d}, logs, carry


@jax.jit
def _generate(state, noise):
    return (state.model(True)(noise) + 1) / 2


def samples(state, noise: jax.Array) -> np.ndarray:
    """G's images of `noise` in [0, 1], (N, 64, 64, 3), with batch statistics (the book's netG(fixed_noise)).

    The statistics the call moves are dropped: the training state is left as it was."""
    return np.asarray(_generate(state, noise))


class EpochReport(Callback):
    """After each epoch: the book's line of losses and D outputs, and the fixed-noise sample grid."""

    def __init__(self, ctx: Context, noise: jax.Array):
        self.ctx, self.noise = ctx, noise

    def on_epoch_end(self, trainer, epoch, logs):
        self.ctx.print(f"[{epoch}/{trainer.epochs}] Loss_D: {logs['loss_d']:.4f} Loss_G: {logs['loss_g']:.4f} "
                       f"D(x): {logs['d_x']:.4f} D(G(z)): {logs['d_g_z1']:.4f} / {logs['d_g_z2']:.4f}")
        save_grid(self.ctx, f"dcgan_fake_samples_epoch_{epoch:03d}", samples(trainer.state["G"], self.noise))


def save_grid(ctx: Context, name: str, images: np.ndarray):
    """An 8-column grid of images (N, H, W, 3) in [0, 1] saved as NAME.png (the book's vutils.save_image)."""
    from dlcore.inspect import image_grid

    grid = image_grid(np.clip(images, 0, 1), ncols=8, pad=2, normalize=False)

    def draw(plt):
        fig = plt.figure(figsize=(grid.shape[1] / 100, grid.shape[0] / 100))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(grid)
        ax.axis("off")
        return fig

    return ctx.save_plot(name, draw)


def run(ctx: Context) -> dict[str, float]:
    quick = ctx.quick
    splits = ctx.load(standin_options={"image_size": SIZE, "n_samples": 48 if quick else 600})
    x = np.asarray(splits["train"]["x"], np.float32)           # (N, S, S, 3) in [0, 1]
    if quick:
        x = x[:32]
    epochs = ctx.n_epochs(25, quick=1)
    width, batch_size = (16, 8) if quick else (64, 64)
    ctx.print(f"{len(x)} training images of {x.shape[1]}x{x.shape[2]}, resized to {SIZE}x{SIZE}; "
              f"ngf = ndf = {width}, batch {batch_size}, {epochs} epochs")
    gen = models.create("dcgan_generator", ngf=width, seed=ctx.seed)
    disc = models.create("dcgan_discriminator", ndf=width, seed=ctx.seed + 1)
    noise = jax.random.normal(jax.random.PRNGKey(ctx.seed + 2), (64, NZ))  # fixed_noise
    save_grid(ctx, "dcgan_real_samples", x[:64])
    kwargs = ctx.trainer_kwargs({"lr": LR, "betas": list(BETAS), "batch_size": batch_size, "epochs": epochs,
                                 "width": width, "nz": NZ})
    kwargs["callbacks"] = [*kwargs["callbacks"], EpochReport(ctx, noise)]
    trainer = dlcore.Trainer({"G": gen, "D": disc},
                             {"G": optim.adam(LR, betas=BETAS), "D": optim.adam(LR, betas=BETAS)},
                             step=gan_step, batch_size=batch_size, drop_last=True, **kwargs)
    h = trainer.fit({"x": x}, epochs=epochs, resume=ctx.resume)
    return {k: h[k][-1] for k in ("loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2")}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
