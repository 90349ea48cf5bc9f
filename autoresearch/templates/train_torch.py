"""
A small GPT, trained for a fixed wall-clock budget, then scored by the harness in validation bits per byte.

This is the file under research: change anything in it to get a lower val_bpb in the same time budget.
The constants below are the intended dials; the model, optimizer and loop are fair game too.

What is NOT here, on purpose, and cannot be changed from here: the data, the tokenizer, the sequence length,
the vocabulary, the time budget and the evaluation. They belong to the harness (`autoresearch.harness`):
batches come from `H.train_batches`, the clock is `H.keep_training`, the score is `H.finish`.

It reads top to bottom: the knobs, the model, the optimizer, the schedules, the setup, the training loop
and the end (the harness's evaluation and summary). Run it inside a run directory: `python train.py`.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import autoresearch.harness.torch as harness

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
    return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    """Rotary position embedding tables for a (B, T, heads, head_dim) layout."""

    def __init__(self, head_dim, max_len, base=10000.0):
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)
        self.register_buffer("cos", angles.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", angles.sin()[None, :, None, :], persistent=False)

    def forward(self, x):
        t = x.size(1)
        cos, sin = self.cos[:, :t].to(x.dtype), self.sin[:, :t].to(x.dtype)
        a, b = x.chunk(2, dim=-1)
        return torch.cat([a * cos + b * sin, b * cos - a * sin], dim=-1)


def sliding_window_mask(seq_len, window, device, flex=None):
    """Where position i may look: j with i - window < j <= i. On CUDA a flex-attention block mask (the fused
    kernel skips the blocks outside the window); elsewhere a boolean (T, T) mask for SDPA."""
    if flex if flex is not None else torch.device(device).type == "cuda":
        from torch.nn.attention.flex_attention import create_block_mask

        def in_window(b, h, q_idx, kv_idx):
            return (kv_idx <= q_idx) & (kv_idx > q_idx - window)

        return create_block_mask(in_window, None, None, seq_len, seq_len, device=device)
    i = torch.arange(seq_len, device=device)[:, None]
    j = torch.arange(seq_len, device=device)[None, :]
    return (j <= i) & (j > i - window)


FLEX = {}  # flex attention, compiled once on CUDA: the fused kernel, also when the harness evaluates the eager model


def windowed_attention(q, k, v, mask, window):
    """Causal attention within the last `window` tokens, (B, heads, T, head_dim) in and out."""
    t = q.size(2)
    if isinstance(mask, torch.Tensor):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:t, :t])
    if t == mask.shape[-2]:
        if q.device not in FLEX:
            from torch.nn.attention.flex_attention import flex_attention

            FLEX[q.device] = torch.compile(flex_attention, dynamic=False) if q.is_cuda else flex_attention
        return FLEX[q.device](q, k, v, block_mask=mask)
    dense = sliding_window_mask(t, window, "cpu").to(q.device)  # a shorter input than the block mask was built for
    return F.scaled_dot_product_attention(q, k, v, attn_mask=dense)


class Attention(nn.Module):
    def __init__(self, layer, window):
        super().__init__()
        self.heads = WIDTH // HEAD_DIM
        self.window = window  # None = full causal
        self.q = nn.Linear(WIDTH, WIDTH, bias=False)
        self.k = nn.Linear(WIDTH, WIDTH, bias=False)
        self.v = nn.Linear(WIDTH, WIDTH, bias=False)
        self.out = nn.Linear(WIDTH, WIDTH, bias=False)
        self.value_gate = nn.Parameter(torch.zeros(self.heads)) if VALUE_EMBEDS and layer % 2 == 1 else None

    def forward(self, x, rotary, value_embed, masks):
        b, t, _ = x.shape
        shape = (b, t, self.heads, HEAD_DIM)
        q = rotary(rms_norm(self.q(x).view(shape)))
        k = rotary(rms_norm(self.k(x).view(shape)))
        v = self.v(x).view(shape)
        if self.value_gate is not None:
            gate = 2 * torch.sigmoid(self.value_gate).view(1, 1, -1, 1)
            v = v + gate * value_embed.view(shape)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if self.window is None or self.window >= t:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = windowed_attention(q, k, v, masks[self.window], self.window)
        return self.out(y.transpose(1, 2).reshape(b, t, WIDTH))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(WIDTH, MLP_RATIO * WIDTH, bias=False)
        self.down = nn.Linear(MLP_RATIO * WIDTH, WIDTH, bias=False)

    def forward(self, x):
        return self.down(F.relu(self.up(x)).square())


class Block(nn.Module):
    def __init__(self, layer, window):
        super().__init__()
        self.attn = Attention(layer, window)
        self.mlp = MLP()

    def forward(self, x, rotary, value_embed, masks):
        x = x + self.attn(rms_norm(x), rotary, value_embed, masks)
        return x + self.mlp(rms_norm(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, seq_len):
        super().__init__()
        self.vocab_size = vocab_size
        windows = [None if WINDOW_PATTERN[i % len(WINDOW_PATTERN)] == "L" else SHORT_WINDOW for i in range(DEPTH)]
        self.embed = nn.Embedding(vocab_size, WIDTH)
        self.value_embeds = nn.ModuleDict(
            {str(i): nn.Embedding(vocab_size, WIDTH) for i in range(DEPTH) if VALUE_EMBEDS and i % 2 == 1}
        )
        self.blocks = nn.ModuleList([Block(i, w) for i, w in enumerate(windows)])
        self.head = nn.Linear(WIDTH, vocab_size, bias=False)
        # per layer: x <- resid_scale * x + skip_scale * x0 (x0 = the normalized embedding)
        self.resid_scale = nn.Parameter(torch.ones(DEPTH))
        self.skip_scale = nn.Parameter(torch.zeros(DEPTH))
        self.rotary = Rotary(HEAD_DIM, seq_len)
        self.windows = sorted({w for w in windows if w is not None and w < seq_len})
        self.seq_len = seq_len
        self.masks, self.masks_device = None, None
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        bound = math.sqrt(3.0 / WIDTH)  # uniform with the variance of N(0, 1/WIDTH)
        for block in self.blocks:
            for lin in (block.attn.q, block.attn.k, block.attn.v, block.mlp.up):
                lin.weight.uniform_(-bound, bound)
            block.attn.out.weight.zero_()  # every block starts as the identity
            block.mlp.down.weight.zero_()
        self.embed.weight.normal_(0.0, 1.0)
        for ve in self.value_embeds.values():
            ve.weight.uniform_(-bound, bound)
        self.head.weight.normal_(0.0, 0.001)

    def forward(self, idx, targets=None):
        masks = self.masks_for(idx.device)
        x = x0 = rms_norm(self.embed(idx))
        for i, block in enumerate(self.blocks):
            x = self.resid_scale[i] * x + self.skip_scale[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            x = block(x, self.rotary, ve, masks)
        logits = self.head(rms_norm(x)).float()
        if LOGIT_SOFTCAP:
            logits = LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))

    def masks_for(self, device):
        """The sliding-window masks, built once per device (before torch.compile: see the setup below)."""
        if self.masks is None or self.masks_device != device:
            self.masks = {w: sliding_window_mask(self.seq_len, w, device) for w in self.windows}
            self.masks_device = device
        return self.masks

    def flops_per_token(self):
        """Training FLOPs per token: 6 x matmul parameters + attention scores and values."""
        embeddings = self.embed.weight.numel() + sum(v.weight.numel() for v in self.value_embeds.values())
        matmul_params = sum(p.numel() for p in self.parameters()) - embeddings
        return 6 * matmul_params + 12 * DEPTH * WIDTH * self.seq_len


# --- optimizer: Muon for the matrices inside the blocks, AdamW for the rest ----------------------------


@torch.no_grad()
def orthogonalize(g, steps):
    """Approximate the nearest semi-orthogonal matrix (U V^T of the SVD) with a quintic Newton-Schulz."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16() if g.is_cuda else g.float()
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        s = x @ x.mT
        x = a * x + (b * s + c * (s @ s)) @ x
    if tall:
        x = x.mT
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Momentum, then orthogonalized updates; same-shaped matrices are orthogonalized as one batch."""

    def __init__(self, params, lr, momentum, weight_decay=0.0, ns_steps=5):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            by_shape = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(p.shape, []).append(p)
            for shape, params in by_shape.items():
                grads = torch.stack([p.grad for p in params])
                bufs = []
                for p in params:
                    if "momentum" not in self.state[p]:
                        self.state[p]["momentum"] = torch.zeros_like(p)
                    bufs.append(self.state[p]["momentum"])
                buf = torch.stack(bufs)
                buf.lerp_(grads, 1 - group["momentum"])
                update = orthogonalize(grads.lerp_(buf, group["momentum"]), group["ns_steps"])  # Nesterov
                scale = max(1.0, shape[-2] / shape[-1]) ** 0.5
                for i, p in enumerate(params):
                    self.state[p]["momentum"].copy_(buf[i])
                    if group["weight_decay"]:
                        p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update[i], alpha=-group["lr"] * scale)


def make_optimizers(model):
    """(adam, muon): AdamW for the embeddings, the head and the scalars; Muon for the blocks' matrices."""
    matrices = [p for p in model.blocks.parameters() if p.ndim == 2]
    scalars = [p for p in model.blocks.parameters() if p.ndim < 2] + [model.resid_scale, model.skip_scale]
    embeds = [model.embed.weight] + [v.weight for v in model.value_embeds.values()]
    width_scale = (WIDTH / 768) ** -0.5  # AdamW rates were tuned at width 768
    adam = torch.optim.AdamW(
        [
            dict(params=embeds, lr=EMBED_LR * width_scale),
            dict(params=[model.head.weight], lr=UNEMBED_LR * width_scale),
            dict(params=scalars, lr=SCALAR_LR),
        ],
        betas=ADAM_BETAS,
        eps=1e-10,
        weight_decay=0.0,
    )
    muon = Muon(matrices, lr=MATRIX_LR, momentum=MUON_MOMENTUM, weight_decay=WEIGHT_DECAY, ns_steps=NS_STEPS)
    for opt in (adam, muon):
        for group in opt.param_groups:
            group["peak_lr"] = group["lr"]
    return adam, muon


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
model = GPT(H.vocab_size, H.seq_len).to(H.device)
adam, muon = make_optimizers(model)
optimizers = (adam, muon)
model.masks_for(next(model.parameters()).device)  # cuda:0 as the batches compare (not "cuda"); before compiling
train_model = torch.compile(model) if H.config.compile else model
scaler = torch.amp.GradScaler(H.device.type, enabled=H.autocast_dtype == torch.float16)  # fp16 needs loss scaling
grad_accum = max(1, TOTAL_BATCH_SIZE // (DEVICE_BATCH_SIZE * H.seq_len))
print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, depth {DEPTH}, width {WIDTH}, "
      f"{grad_accum} x {DEVICE_BATCH_SIZE} x {H.seq_len} tokens per step on {H.device}", flush=True)

# --- training loop: one optimizer step per H.keep_training(), until the budget is spent ----------------

batches = H.train_batches(DEVICE_BATCH_SIZE)
x, y = next(batches)
step = 0
while H.keep_training():
    lr_mult = lr_multiplier(H.progress)
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["peak_lr"] * lr_mult
    muon.param_groups[0]["momentum"] = muon_momentum(step)
    for _ in range(grad_accum):
        with H.autocast():
            loss = train_model(x, y)
        scaler.scale(loss / grad_accum).backward()
        x, y = next(batches)
    for opt in optimizers:
        scaler.step(opt)  # unscales first; skips the step if fp16 gradients overflowed
    scaler.update()
    model.zero_grad(set_to_none=True)
    H.check_loss(loss)
    step += 1

# --- the end: the harness evaluates the model and prints the summary -----------------------------------

# H.finish checks the run (time spent outside the step clock, training hidden in the uncounted warm-up steps, a
# model that sees future tokens: each makes the run invalid), scores the model in bits per byte on the harness's
# fixed validation tokens, writes the metrics file (and the engine's held-out test score, never printed) and
# prints the `---` summary: val_bpb, training_seconds, ..., status. flops_per_token only feeds mfu_percent (when
# the device's peak FLOPs are known); depth is reported as is.
H.finish(model, flops_per_token=model.flops_per_token(), depth=DEPTH)
