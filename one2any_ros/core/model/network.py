"""The One2Any network: a ROPE encoder for the reference and a conditioned U-Net decoder for the query.

Shapes use N = ``input_size`` (square crops by the fixed crop rule, ``camera.crop_box``) and
``No = N // output_stride`` (the output grid). Channels first, float32.

- ROPE encoder (once per reference): 7 channels = RGB in [0,1], the reference's ROC map (its masked depth
  back-projected into the canonical frame C and divided by the scale s; ``Reference.roc_map``) and the
  mask -> a token sequence with positional embeddings at strides 8 and 4 (cross-attention memory) plus
  matching keys at the output stride whose *values* are the reference ROC at that stride.
- Decoder (every frame): a U-Net over the query crop, 8 channels = RGB in [0,1], the mask, the query's
  depth points (centred on their median, divided by the REFERENCE scale s) and a valid-depth flag;
  cross-attention to the ROPE tokens at strides 8 (bottleneck, with self-attention) and 4 (on the way
  down and up).
- Output head (docs/architecture.md, Learning): matching -- attention of each query pixel over the valid
  reference pixels whose values are the reference ROC, i.e. every query pixel picks where it lies on the
  reference -- plus a
  residual regression (zero-initialised) for the surface the reference did not see, and a per-pixel
  Laplace scale b (expected absolute ROC error per coordinate) from which the confidence is derived.

The encoder output is a plain dict of tensors so it can be cached as numpy arrays in
``Reference.embedding`` and fed back without running the encoder again.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from one2any_ros.core.strict_config import from_dict_strict

ARCHITECTURE_NAME = "one2any_rope_unet"
ARCHITECTURE_VERSION = 1
REF_CHANNELS = 7  # rgb(3) + roc(3) + mask(1)
QUERY_CHANNELS = 8  # rgb(3) + mask(1) + points/s(3) + valid depth(1)
CONFIDENCE_SCALE = 0.1  # confidence = exp(-b / CONFIDENCE_SCALE); b = expected |ROC error| per coordinate
EMBEDDING_KEYS = ("tokens8", "tokens4", "keys", "values", "valid")


@dataclass(frozen=True)
class NetConfig:
    """Architecture hyper-parameters (stored in the checkpoint JSON; a mismatch with the tensors is an error)."""

    input_size: int = 64  # N: square network input, pixels
    output_stride: int = 2  # 2 or 4: the ROC/confidence grid is N / output_stride
    stem: int = 16  # channels at full resolution
    widths: tuple[int, int, int] = (32, 64, 128)  # channels at strides 2, 4, 8
    match_dim: int = 64  # key/query width of the matching head
    heads: int = 4  # attention heads (cross- and self-attention)
    ref_layers: int = 1  # self-attention layers over the reference tokens at stride 8
    bottleneck_layers: int = 2  # decoder layers (self + cross + MLP) at stride 8
    rgb_mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    rgb_std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def __post_init__(self) -> None:
        if self.output_stride not in (2, 4):
            raise ValueError(f"output_stride must be 2 or 4, got {self.output_stride}")
        if self.input_size % 8 or self.input_size < 32:
            raise ValueError(f"input_size must be a multiple of 8 and >= 32, got {self.input_size}")
        if len(self.widths) != 3:
            raise ValueError(f"widths must have 3 entries (strides 2, 4, 8), got {self.widths}")

    @property
    def output_size(self) -> int:
        return self.input_size // self.output_stride

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["rgb_mean"] = list(self.rgb_mean)
        d["rgb_std"] = list(self.rgb_std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        """Build from a dict; unknown keys raise ValueError (a checkpoint from another architecture)."""
        return from_dict_strict(cls, d, "architecture fields",
                                lambda k, v: tuple(v) if k in ("widths", "rgb_mean", "rgb_std") else v)


def _groups(c: int) -> int:
    return 8 if c % 8 == 0 else 1


class ConvBlock(nn.Module):
    """Residual 3x3 conv block with GroupNorm (batch-size independent: batch 1 at inference, DDP shards)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.skip = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.silu(y + (x if self.skip is None else self.skip(x)))


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine/cosine positional embedding (h*w, dim), rows first.

    Args:
        h: grid rows.
        w: grid columns.
        dim: embedding width, a multiple of 4.

    Returns:
        (h * w, dim) float32 tensor: sin and cos of x, then of y, each over dim / 4 frequencies.

    Raises:
        ValueError: ``dim`` is not a multiple of 4.
    """
    if dim % 4:
        raise ValueError(f"positional embedding width must be a multiple of 4, got {dim}")
    q = dim // 4
    omega = 1.0 / (100.0 ** (torch.arange(q, dtype=torch.float32) / max(q - 1, 1)))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    ys = ys.reshape(-1, 1) / h * 2 * math.pi * omega
    xs = xs.reshape(-1, 1) / w * 2 * math.pi * omega
    return torch.cat([xs.sin(), xs.cos(), ys.sin(), ys.cos()], dim=1)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)  # (B,C,H,W) -> (B,HW,C)


def _grid(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)


class CrossBlock(nn.Module):
    """Pre-norm transformer block: optional self-attention, cross-attention to memory, MLP."""

    def __init__(self, dim: int, heads: int, *, self_attn: bool) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True) if self_attn else None
        self.norm_s = nn.LayerNorm(dim) if self_attn else None
        self.norm_q = nn.LayerNorm(dim)
        self.norm_m = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_f = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, mem: torch.Tensor, mem_pad: torch.Tensor | None = None) -> torch.Tensor:
        if self.self_attn is not None:
            h = self.norm_s(x)
            x = x + self.self_attn(h, h, h, need_weights=False)[0]
        m = self.norm_m(mem)
        x = x + self.cross(self.norm_q(x), m, m, key_padding_mask=mem_pad, need_weights=False)[0]
        return x + self.mlp(self.norm_f(x))


def pool_roc(roc: torch.Tensor, valid: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Valid-weighted average of an ROC map over stride x stride cells.

    Used for the reference's matching values and for the training targets alike.

    Args:
        roc: (B, 3, N, N) float ROC map, reference-radius units.
        valid: (B, 1, N, N) float or bool, the pixels that count.
        stride: s, the cell's side, pixels (N divisible by s).

    Returns:
        (roc, valid): (B, 3, N / s, N / s) of ``roc``'s dtype (0 in cells with no valid pixel) and
        (B, 1, N / s, N / s) bool.
    """
    v = valid.to(roc.dtype)
    num = F.avg_pool2d(roc * v, stride)
    den = F.avg_pool2d(v, stride)
    ok = den > 0
    return torch.where(ok, num / den.clamp_min(1e-6), torch.zeros_like(num)), ok


class RopeEncoder(nn.Module):
    """Reference crop (B,7,N,N) + valid depth (B,1,N,N) -> ROPE embedding dict (see EMBEDDING_KEYS)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.widths
        self.cfg = cfg
        self.register_buffer("rgb_mean", torch.tensor(cfg.rgb_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(cfg.rgb_std).view(1, 3, 1, 1), persistent=False)
        n = cfg.input_size
        self.stem = ConvBlock(REF_CHANNELS, cfg.stem)
        self.down2 = ConvBlock(cfg.stem, c1, 2)
        self.down4 = ConvBlock(c1, c2, 2)
        self.down8 = ConvBlock(c2, c3, 2)
        self.register_buffer("pos8", sincos_2d(n // 8, n // 8, c3), persistent=False)
        self.register_buffer("pos4", sincos_2d(n // 4, n // 4, c2), persistent=False)
        self.layers8 = nn.ModuleList(nn.TransformerEncoderLayer(c3, cfg.heads, 2 * c3, dropout=0.0, activation="gelu",
                                                                batch_first=True, norm_first=True)
                                     for _ in range(cfg.ref_layers))
        self.lat4 = nn.Conv2d(c3, c2, 1)
        self.up4 = ConvBlock(c2, c2)
        if cfg.output_stride == 2:
            self.lat2 = nn.Conv2d(c2, c1, 1)
            self.up2 = ConvBlock(c1, c1)
            self.key = nn.Conv2d(c1, cfg.match_dim, 1)
        else:
            self.key = nn.Conv2d(c2, cfg.match_dim, 1)

    def forward(self, ref: torch.Tensor, ref_valid: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        x = torch.cat([(ref[:, :3] - self.rgb_mean) / self.rgb_std, ref[:, 3:]], dim=1)
        f1 = self.stem(x)
        f2 = self.down2(f1)
        f4 = self.down4(f2)
        f8 = self.down8(f4)
        n8 = cfg.input_size // 8
        t8 = _tokens(f8) + self.pos8
        for layer in self.layers8:
            t8 = layer(t8)
        g4 = self.up4(f4 + F.interpolate(self.lat4(_grid(t8, n8, n8)), scale_factor=2.0, mode="nearest"))
        t4 = _tokens(g4) + self.pos4
        if cfg.output_stride == 2:
            g2 = self.up2(f2 + F.interpolate(self.lat2(g4), scale_factor=2.0, mode="nearest"))
            keys = self.key(g2)
        else:
            keys = self.key(g4)
        values, valid = pool_roc(ref[:, 3:6], ref_valid * ref[:, 6:7], cfg.output_stride)
        return {"tokens8": t8, "tokens4": t4, "keys": _tokens(keys), "values": _tokens(values),
                "valid": valid.flatten(1)}


class QueryDecoder(nn.Module):
    """Query crop (B,8,N,N) + ROPE embedding -> dict(roc (B,3,No,No), log_b (B,1,No,No), roc_match, ...,
    match_logits (B,No*No,Lk): the matching head's logits over the reference cells, -inf where invalid)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.widths
        self.cfg = cfg
        n = cfg.input_size
        self.register_buffer("rgb_mean", torch.tensor(cfg.rgb_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(cfg.rgb_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pos8", sincos_2d(n // 8, n // 8, c3), persistent=False)
        self.register_buffer("pos4", sincos_2d(n // 4, n // 4, c2), persistent=False)
        self.stem = ConvBlock(QUERY_CHANNELS, cfg.stem)
        self.down2 = ConvBlock(cfg.stem, c1, 2)
        self.down4 = ConvBlock(c1, c2, 2)
        self.cross4_down = CrossBlock(c2, cfg.heads, self_attn=False)
        self.down8 = ConvBlock(c2, c3, 2)
        self.bottleneck = nn.ModuleList(CrossBlock(c3, cfg.heads, self_attn=True) for _ in range(cfg.bottleneck_layers))
        self.up4 = ConvBlock(c3 + c2, c2)
        self.cross4_up = CrossBlock(c2, cfg.heads, self_attn=False)
        cout = c2
        if cfg.output_stride == 2:
            self.up2 = ConvBlock(c2 + c1, c1)
            cout = c1
        self.query = nn.Conv2d(cout, cfg.match_dim, 1)
        self.log_temp = nn.Parameter(torch.zeros(()))  # learned sharpness of the matching softmax
        self.head = nn.Sequential(ConvBlock(cout + 4, cout), nn.Conv2d(cout, 4, 3, 1, 1))
        nn.init.zeros_(self.head[1].weight)
        with torch.no_grad():
            self.head[1].bias.zero_()
            self.head[1].bias[3] = math.log(0.2)  # initial b: a vague prior

    def forward(self, query: torch.Tensor, emb: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        n4, n8, no = cfg.input_size // 4, cfg.input_size // 8, cfg.output_size
        x = torch.cat([(query[:, :3] - self.rgb_mean) / self.rgb_std, query[:, 3:]], dim=1)
        f1 = self.stem(x)
        f2 = self.down2(f1)
        f4 = self.down4(f2)
        t4 = self.cross4_down(_tokens(f4) + self.pos4, emb["tokens4"])
        f4 = _grid(t4, n4, n4)
        t8 = _tokens(self.down8(f4)) + self.pos8
        for blk in self.bottleneck:
            t8 = blk(t8, emb["tokens8"])
        g4 = self.up4(torch.cat([F.interpolate(_grid(t8, n8, n8), scale_factor=2.0, mode="nearest"), f4], 1))
        g4 = _grid(self.cross4_up(_tokens(g4) + self.pos4, emb["tokens4"]), n4, n4)
        g = self.up2(torch.cat([F.interpolate(g4, scale_factor=2.0, mode="nearest"), f2], 1)) if cfg.output_stride == 2 else g4
        # matching head: softmax over valid reference pixels, values = reference ROC (and its square, for the spread)
        q = _tokens(self.query(g)) * (self.log_temp.exp() / math.sqrt(cfg.match_dim))
        k, v, valid = emb["keys"], emb["values"], emb["valid"].bool()
        logits = torch.bmm(q, k.transpose(1, 2)).float()  # (B,Lq,Lk)
        logits = logits.masked_fill(~valid[:, None, :], float("-inf"))
        attn = torch.softmax(logits, dim=-1)
        attn = torch.nan_to_num(attn, nan=0.0)  # a reference with no valid pixel: all -inf rows
        vv = v.float()
        m1 = torch.bmm(attn, vv)
        m2 = torch.bmm(attn, vv * vv)
        # floored before the root: once the matching grows sharp the variance reaches 0, where sqrt's gradient is
        # infinite (it turned a CPU run's weights to NaN at step ~2000)
        spread = (m2 - m1 * m1).sum(-1, keepdim=True).clamp_min(1e-8).sqrt()
        roc_match = _grid(m1, no, no)
        h = self.head(torch.cat([g.float(), roc_match, _grid(spread, no, no)], 1))
        return {"roc": roc_match + h[:, :3], "roc_match": roc_match, "log_b": h[:, 3:4].clamp(-7.0, 3.0),
                "spread": _grid(spread, no, no), "match_logits": logits}


class One2AnyNet(nn.Module):
    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = RopeEncoder(cfg)
        self.decoder = QueryDecoder(cfg)

    def encode(self, ref: torch.Tensor, ref_valid: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.encoder(ref, ref_valid)

    def decode(self, query: torch.Tensor, emb: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.decoder(query, emb)

    def forward(self, ref: torch.Tensor, ref_valid: torch.Tensor, query: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.decode(query, self.encode(ref, ref_valid))


def confidence_from_log_b(log_b: torch.Tensor) -> torch.Tensor:
    """Per-pixel confidence in (0,1]: exp(-b / CONFIDENCE_SCALE).

    Args:
        log_b: (...) float tensor, log of b, the expected |ROC error| per coordinate (reference-radius units).

    Returns:
        (...) tensor of the same shape and dtype.
    """
    return torch.exp(-log_b.exp() / CONFIDENCE_SCALE)


def count_parameters(model: nn.Module) -> int:
    """The number of a model's weights, trainable or not.

    Args:
        model: any torch module.

    Returns:
        int: elements summed over ``model.parameters()``.
    """
    return sum(p.numel() for p in model.parameters())
