"""timm Swin / ViT encoders with SimMIM's learned mask token, for any channel count and grid.

We wrap timm's models (never fork them): the patch embedding takes ``in_chans``
real channels, the mask token replaces the embedded patches where nothing was
acquired, and every stage's feature map is returned (NCHW) for the decoders.
Both accept any input size that is a multiple of :attr:`stride` (``dynamic_img_size``).
"""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn


class MaskedEncoder(nn.Module):
    """What both encoders share: SimMIM's learned mask token and the stage geometry.

    ``mask_token=False`` builds no token: an encoder that never sees a missing patch (the
    zero-filled image, a cascade's denoiser) would hold a parameter without a gradient,
    which stops DDP training (``find_unused_parameters=False``) at the first step.
    """

    def __init__(
        self,
        embed_dim: int,
        patch_size: int,
        channels: list[int],
        strides: list[int],
        mask_token: bool = True,
    ):
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, embed_dim)) if mask_token else None
        if self.mask_token is not None:
            trunc_normal_(self.mask_token, std=0.02)
        self.patch_size = patch_size
        self.channels = channels  # per returned stage
        self.strides = strides

    @property
    def stride(self) -> int:
        """The encoder's real downsampling (SimMIM's ``encoder_stride``)."""
        return self.strides[-1]

    def insert_mask_tokens(self, x: Tensor, token_mask: Tensor | None) -> Tensor:
        """x: embedded patches NHWC; token_mask: bool (B, H, W), True = mask token."""
        if token_mask is None:
            return x
        if self.mask_token is None:
            raise ValueError("this encoder was built without a mask token (mask_token=False)")
        return torch.where(token_mask[..., None], self.mask_token.to(x.dtype), x)


class SwinEncoder(MaskedEncoder):
    """Hierarchical timm Swin: stage i has ``embed_dim * 2**i`` channels at ``patch * 2**i``."""

    def __init__(
        self,
        in_chans: int,
        img_size: tuple[int, int],
        patch_size: int,
        embed_dim: int,
        depths: tuple[int, ...],
        num_heads: tuple[int, ...],
        window_size: int,
        drop_path_rate: float = 0.0,
        mask_token: bool = True,
    ):
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} need the same length")
        stages = range(len(depths))
        super().__init__(
            embed_dim,
            patch_size,
            [embed_dim * 2**i for i in stages],
            [patch_size * 2**i for i in stages],
            mask_token,
        )
        self.swin = SwinTransformer(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=0,
            global_pool="",
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            drop_path_rate=drop_path_rate,
            strict_img_size=False,
        )

    def forward(self, x: Tensor, token_mask: Tensor | None = None) -> list[Tensor]:
        """x: (B, in_chans, H, W); token_mask: bool (B, H/p, W/p), True = mask token."""
        x = self.insert_mask_tokens(self.swin.patch_embed(x), token_mask)  # NHWC
        features = []
        for layer in self.swin.layers:
            x = layer(x)
            features.append(x)
        features[-1] = self.swin.norm(features[-1])
        return [f.permute(0, 3, 1, 2) for f in features]


class ViTEncoder(MaskedEncoder):
    """Plain timm ViT (no class token): one feature map at stride ``patch_size``."""

    def __init__(
        self,
        in_chans: int,
        img_size: tuple[int, int],
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        drop_path_rate: float = 0.0,
        mask_token: bool = True,
    ):
        super().__init__(embed_dim, patch_size, [embed_dim], [patch_size], mask_token)
        self.vit = VisionTransformer(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=0,
            global_pool="",
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            class_token=False,
            dynamic_img_size=True,
            drop_path_rate=drop_path_rate,
        )

    def forward(self, x: Tensor, token_mask: Tensor | None = None) -> list[Tensor]:
        x = self.insert_mask_tokens(self.vit.patch_embed(x), token_mask)  # NHWC (dynamic size)
        b, h, w, c = x.shape
        x = self.vit.norm_pre(self.vit._pos_embed(x))  # adds (resampled) position embeddings
        x = self.vit.norm(self.vit.blocks(x))
        return [x.reshape(b, h, w, c).permute(0, 3, 1, 2)]
