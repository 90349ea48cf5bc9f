"""
A small GPT in MLX, trained for a fixed wall-clock budget, then scored by the harness in validation bits per byte.

This is the file under research: change anything in it to get a lower val_bpb in the same time budget.
The constants below are the intended dials; the model, optimizer and loop are fair game too.
It is the MLX twin of train_torch.py: the same model, optimizers, schedule and knobs.

What is NOT here, on purpose, and cannot be changed from here: the data, the tokenizer, the sequence length,
the vocabulary, the time budget and the evaluation. They belong to the harness (`autoresearch.harness`):
batches come from `H.train_batches`, the clock is `H.keep_training`, the score is `H.finish`.

It reads top to bottom: the knobs, the model, the optimizer, the schedules, the setup, the training loop
and the end (the harness's evaluation and summary). Run it inside a run directory: `python train.py`.
"""

import math

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_map, tree_map_with_path

import autoresearch.harness.mlx as harness

# Hyperparameters: the engine reads and rewrites the one-line constants between the two marker lines.
# --- knobs ---------------------------------------------------------------------------------------------
DEPTH = 4  # transformer blocks
WIDTH = 128  # model dimension
HEAD_DIM = 32  # channels per attention head (WIDTH // HEAD_DIM heads)
MLP_RATIO = 4  # hidden size of the MLP, in multiples of WIDTH
WINDOW_PATTERN = "L"  # per layer, cycled: L = full causal attention, S = sliding window of SHORT_WINDOW tokens
SHORT_WINDOW = 128  # tokens a sliding-window layer looks back
VALUE_EMBEDS = False  # add a learned per-token value embedding in every other layer
LOGIT_SOFTCAP = 15.0  # logits = cap * tanh(logits / cap); 0 disables
DEVICE_BATCH_SIZE = 8  # rows per forward/backward
TOTAL_BATCH_SIZE = 2**11  # tokens per optimizer step (gradient accumulation makes up the difference)
MATRIX_LR = 0.04  # Muon, for the 2-D weights inside the blocks
EMBED_LR = 0.6  # AdamW, token (and value) embeddings
UNEMBED_LR = 0.004  # AdamW, the output head
SCALAR_LR = 0.5  # AdamW, the per-layer residual mixing scalars
ADAM_BETAS = (0.8, 0.95)
WEIGHT_DECAY = 0.0  # decoupled, on Muon matrices
MUON_MOMENTUM = 0.95  # reached after MUON_WARMUP_STEPS, starting from 0.85
MUON_WARMUP_STEPS = 300
NS_STEPS = 5  # Newton-Schulz iterations of the orthogonalization
WARMUP_FRAC = 0.0  # fraction of the budget with a linear LR warmup
WARMDOWN_FRAC = 0.5  # fraction of the budget at the end with a linear LR decay
FINAL_LR_FRAC = 0.0  # LR at the very end, as a fraction of the peak
# --- end of knobs --------------------------------------------------------------------------------------


# --- model ---------------------------------------------------------------------------------------------


def rms_norm(x):
    return mx.fast.rms_norm(x, None, 1.1920929e-07)  # no weight; eps as torch's F.rms_norm in float32


class Rotary:
    """Rotary position embedding for a (B, heads, T, head_dim) layout, rotating the two halves of each head.

    Same rotation as train_torch.py's [a cos + b sin, b cos - a sin]: mx.fast.rope turns by +angle, so it is
    given negative periods (angle = position / period).
    """

    def __init__(self, head_dim, base=10000.0):
        self.head_dim = head_dim
        self.periods = -(base ** (mx.arange(0, head_dim, 2, dtype=mx.float32) / head_dim))

    def __call__(self, x):
        return mx.fast.rope(x, self.head_dim, traditional=False, base=None, scale=1.0, offset=0, freqs=self.periods)


def sliding_window_mask(seq_len, window):
    """Boolean (T, T) mask: position i sees j when i - window < j <= i."""
    i = mx.arange(seq_len)[:, None]
    j = mx.arange(seq_len)[None, :]
    return (j <= i) & (j > i - window)


class Attention(nn.Module):
    def __init__(self, layer, window):
        super().__init__()
        self.heads = WIDTH // HEAD_DIM
        self.window = window  # None = full causal
        self.q = nn.Linear(WIDTH, WIDTH, bias=False)
        self.k = nn.Linear(WIDTH, WIDTH, bias=False)
        self.v = nn.Linear(WIDTH, WIDTH, bias=False)
        self.out = nn.Linear(WIDTH, WIDTH, bias=False)
        self.value_gate = mx.zeros(self.heads) if VALUE_EMBEDS and layer % 2 == 1 else None

    def __call__(self, x, rotary, value_embed, masks):
        b, t, _ = x.shape
        shape = (b, t, self.heads, HEAD_DIM)
        q = rotary(rms_norm(self.q(x).reshape(shape)).transpose(0, 2, 1, 3))
        k = rotary(rms_norm(self.k(x).reshape(shape)).transpose(0, 2, 1, 3))
        v = self.v(x).reshape(shape)
        if self.value_gate is not None:
            gate = 2 * mx.sigmoid(self.value_gate).reshape(1, 1, -1, 1)
            v = v + gate * value_embed.reshape(shape)
        v = v.transpose(0, 2, 1, 3)
        mask = "causal" if self.window is None or self.window >= t else masks[self.window][:t, :t]
        y = mx.fast.scaled_dot_product_attention(q, k, v, scale=HEAD_DIM**-0.5, mask=mask)
        return self.out(y.transpose(0, 2, 1, 3).reshape(b, t, WIDTH))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(WIDTH, MLP_RATIO * WIDTH, bias=False)
        self.down = nn.Linear(MLP_RATIO * WIDTH, WIDTH, bias=False)

    def __call__(self, x):
        return self.down(mx.square(nn.relu(self.up(x))))


class Block(nn.Module):
    def __init__(self, layer, window):
        super().__init__()
        self.attn = Attention(layer, window)
        self.mlp = MLP()

    def __call__(self, x, rotary, value_embed, masks):
        x = x + self.attn(rms_norm(x), rotary, value_embed, masks)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    """Attributes starting with "_" are not parameters (MLX modules treat every other array as one)."""

    def __init__(self, vocab_size, seq_len):
        super().__init__()
        self.vocab_size = vocab_size
        windows = [None if WINDOW_PATTERN[i % len(WINDOW_PATTERN)] == "L" else SHORT_WINDOW for i in range(DEPTH)]
        self.embed = nn.Embedding(vocab_size, WIDTH)
        self.value_embeds = {str(i): nn.Embedding(vocab_size, WIDTH) for i in range(DEPTH) if VALUE_EMBEDS and i % 2 == 1}
        self.blocks = [Block(i, w) for i, w in enumerate(windows)]
        self.head = nn.Linear(WIDTH, vocab_size, bias=False)
        # per layer: x <- resid_scale * x + skip_scale * x0 (x0 = the normalized embedding)
        self.resid_scale = mx.ones(DEPTH)
        self.skip_scale = mx.zeros(DEPTH)
        self._rotary = Rotary(HEAD_DIM)
        self._masks = {w: sliding_window_mask(seq_len, w) for w in sorted({w for w in windows if w is not None and w < seq_len})}
        self.seq_len = seq_len
        self.init_weights()

    def init_weights(self):
        bound = math.sqrt(3.0 / WIDTH)  # uniform with the variance of N(0, 1/WIDTH)

        def uniform(shape):
            return mx.random.uniform(-bound, bound, shape)

        for block in self.blocks:
            for lin in (block.attn.q, block.attn.k, block.attn.v, block.mlp.up):
                lin.weight = uniform(lin.weight.shape)
            block.attn.out.weight = mx.zeros_like(block.attn.out.weight)  # every block starts as the identity
            block.mlp.down.weight = mx.zeros_like(block.mlp.down.weight)
        self.embed.weight = mx.random.normal(self.embed.weight.shape)
        for ve in self.value_embeds.values():
            ve.weight = uniform(ve.weight.shape)
        self.head.weight = 0.001 * mx.random.normal(self.head.weight.shape)

    def __call__(self, idx):
        x = x0 = rms_norm(self.embed(idx))
        for i, block in enumerate(self.blocks):
            x = self.resid_scale[i] * x + self.skip_scale[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            x = block(x, self._rotary, ve, self._masks)
        logits = self.head(rms_norm(x)).astype(mx.float32)
        if LOGIT_SOFTCAP:
            logits = LOGIT_SOFTCAP * mx.tanh(logits / LOGIT_SOFTCAP)
        return logits

    def flops_per_token(self):
        """Training FLOPs per token: 6 x matmul parameters + attention scores and values."""
        embeddings = self.embed.weight.size + sum(v.weight.size for v in self.value_embeds.values())
        matmul_params = sum(p.size for _, p in tree_flatten(self.parameters())) - embeddings
        return 6 * matmul_params + 12 * DEPTH * WIDTH * self.seq_len


def loss_fn(model, x, y):
    """Mean cross entropy of the model's logits for inputs x against targets y (training only)."""
    logits = model(x)
    return nn.losses.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="mean")


# --- optimizer: Muon for the matrices inside the blocks, AdamW for the rest ----------------------------


def orthogonalize(g, steps):
    """Approximate the nearest semi-orthogonal matrix (U V^T of the SVD) with a quintic Newton-Schulz."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.astype(mx.bfloat16) if mx.default_device().type == mx.DeviceType.gpu else g.astype(mx.float32)
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.swapaxes(-1, -2)
    x = x / (mx.sqrt(mx.sum(mx.square(x), axis=(-2, -1), keepdims=True)) + 1e-7)
    for _ in range(steps):
        s = x @ x.swapaxes(-1, -2)
        x = a * x + (b * s + c * (s @ s)) @ x
    if tall:
        x = x.swapaxes(-1, -2)
    return x.astype(g.dtype)


class Muon:
    """Momentum, then orthogonalized updates; same-shaped matrices are orthogonalized as one batch.

    Works on flat {name: array} dicts. `state` holds every array the optimizer changes (for mx.compile).
    """

    def __init__(self, params, names, lr, weight_decay=0.0, ns_steps=5):
        self.lr, self.weight_decay, self.ns_steps = lr, weight_decay, ns_steps
        self.groups = {}  # shape -> names
        for name in names:
            self.groups.setdefault(tuple(params[name].shape), []).append(name)
        self.state = {f"{r}x{c}": mx.zeros((len(ns), r, c)) for (r, c), ns in self.groups.items()}  # momentum

    def step(self, params, grads, lr_mult, momentum):
        new = {}
        lr = self.lr * lr_mult
        for (rows, cols), names in self.groups.items():
            key = f"{rows}x{cols}"
            g = mx.stack([grads[n] for n in names])
            buf = momentum * self.state[key] + (1 - momentum) * g
            self.state[key] = buf
            update = orthogonalize((1 - momentum) * g + momentum * buf, self.ns_steps)  # Nesterov
            scale = max(1.0, rows / cols) ** 0.5
            for i, n in enumerate(names):
                p = params[n] * (1 - lr * self.weight_decay) if self.weight_decay else params[n]
                new[n] = p - lr * scale * update[i]
        return new


class AdamW:
    """torch.optim.AdamW (bias-corrected, eps outside the square root), no weight decay; groups of (names, lr)."""

    def __init__(self, params, groups, betas, eps):
        self.groups, self.betas, self.eps = groups, betas, eps
        names = [n for ns, _ in groups for n in ns]
        self.state = {"t": mx.array(0.0), "m": {n: mx.zeros_like(params[n]) for n in names},
                      "v": {n: mx.zeros_like(params[n]) for n in names}}

    def step(self, params, grads, lr_mult):
        b1, b2 = self.betas
        t = self.state["t"] + 1
        self.state["t"] = t
        c1, c2 = 1 - b1**t, 1 - b2**t
        new = {}
        for names, peak_lr in self.groups:
            for n in names:
                m = b1 * self.state["m"][n] + (1 - b1) * grads[n]
                v = b2 * self.state["v"][n] + (1 - b2) * mx.square(grads[n])
                self.state["m"][n], self.state["v"][n] = m, v
                new[n] = params[n] - (peak_lr * lr_mult / c1) * m / (mx.sqrt(v) / mx.sqrt(c2) + self.eps)
        return new


def make_optimizers(model):
    """(adam, muon): AdamW for the embeddings, the head and the scalars; Muon for the blocks' matrices."""
    params = dict(tree_flatten(model.parameters()))
    block = [n for n in params if n.startswith("blocks.")]
    matrices = [n for n in block if params[n].ndim == 2]
    scalars = [n for n in block if params[n].ndim < 2] + ["resid_scale", "skip_scale"]
    embeds = ["embed.weight"] + [n for n in params if n.startswith("value_embeds.")]
    width_scale = (WIDTH / 768) ** -0.5  # AdamW rates were tuned at width 768
    adam = AdamW(params, [(embeds, EMBED_LR * width_scale), (["head.weight"], UNEMBED_LR * width_scale),
                          (scalars, SCALAR_LR)], betas=ADAM_BETAS, eps=1e-10)
    muon = Muon(params, matrices, lr=MATRIX_LR, weight_decay=WEIGHT_DECAY, ns_steps=NS_STEPS)
    return adam, muon


def make_step_functions(model, adam, muon):
    """A training step's two halves, as functions of arrays only (what mx.compile takes; the model is closed over):
    loss_and_grad(x, y) -> (loss, grads) of one batch, and update(grads, lr_mult, momentum), the optimizer step,
    which gives the model its new parameters."""
    value_and_grad = nn.value_and_grad(model, loss_fn)

    def loss_and_grad(x, y):
        return value_and_grad(model, x, y)

    def update(grads, lr_mult, momentum):
        params = dict(tree_flatten(model.parameters()))
        grads = dict(tree_flatten(grads))
        new = adam.step(params, grads, lr_mult)
        new.update(muon.step(params, grads, lr_mult, momentum))
        model.update(tree_map_with_path(lambda name, p: new.get(name, p), model.parameters()))  # keeps dicts and lists

    return loss_and_grad, update


# --- schedules: the learning rate from H.progress, Muon's momentum from the step -----------------------


def lr_multiplier(progress):
    """The peak learning rate's multiplier at `progress` (the fraction of the budget spent, 0..1)."""
    if progress < WARMUP_FRAC:
        return (progress + 1e-8) / WARMUP_FRAC
    if progress < 1.0 - WARMDOWN_FRAC:
        return 1.0
    left = (1.0 - progress) / WARMDOWN_FRAC
    return left + (1.0 - left) * FINAL_LR_FRAC


MUON_MOMENTUM_START = 0.85  # Muon's momentum at step 0, warmed up linearly to the knob MUON_MOMENTUM


def muon_momentum(step):
    """Muon's momentum at optimizer step `step`: MUON_MOMENTUM_START, rising to MUON_MOMENTUM at MUON_WARMUP_STEPS."""
    return MUON_MOMENTUM_START + (MUON_MOMENTUM - MUON_MOMENTUM_START) * min(1.0, step / MUON_WARMUP_STEPS)


# --- setup: the session, the model, the optimizers -----------------------------------------------------

H = harness.start()
model = GPT(H.vocab_size, H.seq_len)
adam, muon = make_optimizers(model)
grad_accum = max(1, TOTAL_BATCH_SIZE // (DEVICE_BATCH_SIZE * H.seq_len))
n_params = sum(p.size for _, p in tree_flatten(model.parameters()))
print(f"model: {n_params / 1e6:.2f}M parameters, depth {DEPTH}, width {WIDTH}, "
      f"{grad_accum} x {DEVICE_BATCH_SIZE} x {H.seq_len} tokens per step on {H.device}", flush=True)

loss_and_grad, update = make_step_functions(model, adam, muon)
state = [model.state, adam.state, muon.state]  # every array the steps read or change (what mx.compile tracks)
if H.config.compile:  # fuses elementwise ops (meant for Apple GPUs); the first, uncounted step pays the compilation
    loss_and_grad = mx.compile(loss_and_grad, inputs=model.state, outputs=model.state)
    update = mx.compile(update, inputs=state, outputs=state)

# --- training loop: one optimizer step per H.keep_training(), until the budget is spent ----------------

batches = H.train_batches(DEVICE_BATCH_SIZE)
x, y = next(batches)
step = 0
while H.keep_training():
    lr_mult = mx.array(lr_multiplier(H.progress))
    momentum = mx.array(muon_momentum(step))
    grads = None
    for _ in range(grad_accum):
        loss, g = loss_and_grad(x, y)
        grads = g if grads is None else tree_map(mx.add, grads, g)
        x, y = next(batches)
    if grad_accum > 1:
        grads = tree_map(lambda g: g / grad_accum, grads)
    update(grads, lr_mult, momentum)
    mx.eval(loss, state)
    H.check_loss(loss)
    step += 1

# --- the end: the harness evaluates the model and prints the summary -----------------------------------

# H.finish checks the run (time spent outside the step clock, training hidden in the uncounted warm-up steps, a
# model that sees future tokens: each makes the run invalid), scores the model in bits per byte on the harness's
# fixed validation tokens, writes the metrics file (and the engine's held-out test score, never printed) and
# prints the `---` summary: val_bpb, training_seconds, ..., status. flops_per_token only feeds mfu_percent (when
# the device's peak FLOPs are known); depth is reported as is.
H.finish(model, flops_per_token=model.flops_per_token(), depth=DEPTH)
