"""``DeformableTransformer``: flattens the levels, runs the encoder, makes the decoder's queries and
reference points (learned, or two-stage proposals) and runs the decoder.

Parameters (official names): ``level_embed`` [L, C], ``encoder``, ``decoder``, and either
``reference_points`` (Linear(C, 2)) or, two-stage, ``enc_output``, ``enc_output_norm``, ``pos_trans``,
``pos_trans_norm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import init

from .decoder import DeformableTransformerDecoder, DeformableTransformerDecoderLayer
from .encoder import DeformableTransformerEncoder, DeformableTransformerEncoderLayer
from .ms_deform_attn import MSDeformAttn
from .proposals import encoder_output_proposals, proposal_pos_embed


@dataclass
class TransformerOutput:
    """What the detector heads need from one forward."""

    hs: Tensor  # [layers, N, Q, C] every decoder layer's output
    init_reference: Tensor  # [N, Q, 2] learned points, or [N, Q, 4] two-stage boxes
    inter_references: Tensor  # [layers, N, Q, 2|4] the reference each layer ended with
    enc_outputs_class: Tensor | None = None  # [N, S, num_classes] two-stage only
    enc_outputs_coord_unact: Tensor | None = None  # [N, S, 4] box logits, two-stage only


def valid_ratios(mask: Tensor) -> Tensor:
    """[N, h, w] padding mask -> [N, 2] (valid width / w, valid height / h)."""
    _, h, w = mask.shape
    valid_h = (~mask[:, :, 0]).sum(1)
    valid_w = (~mask[:, 0, :]).sum(1)
    return torch.stack([valid_w.float() / w, valid_h.float() / h], -1)


class DeformableTransformer(nn.Module):
    def __init__(
        self,
        d_model: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        num_feature_levels: int = 4,
        dec_n_points: int = 4,
        enc_n_points: int = 4,
        two_stage: bool = False,
        two_stage_num_proposals: int = 300,
    ):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        self.two_stage = two_stage
        self.two_stage_num_proposals = two_stage_num_proposals
        enc = DeformableTransformerEncoderLayer(
            d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points
        )
        self.encoder = DeformableTransformerEncoder(enc, num_encoder_layers)
        dec = DeformableTransformerDecoderLayer(
            d_model, dim_feedforward, dropout, num_feature_levels, nhead, dec_n_points
        )
        self.decoder = DeformableTransformerDecoder(dec, num_decoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        if two_stage:
            self.enc_output = nn.Linear(d_model, d_model)
            self.enc_output_norm = nn.LayerNorm(d_model)
            self.pos_trans = nn.Linear(d_model * 2, d_model * 2)
            self.pos_trans_norm = nn.LayerNorm(d_model * 2)
        else:
            self.reference_points = nn.Linear(d_model, 2)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Xavier for every matrix, then the deformable attentions' own init, then the reference-point
        head (Xavier, zero bias) and the level embeddings (standard normal): the official order."""
        for p in self.parameters():
            if p.dim() > 1:
                init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        if not self.two_stage:
            init.xavier_uniform_(self.reference_points.weight, gain=1.0)
            init.constant_(self.reference_points.bias, 0.0)
        init.normal_(self.level_embed)

    def forward(
        self, srcs: list[Tensor], masks: list[Tensor], pos_embeds: list[Tensor], query_embed: Tensor | None
    ) -> TransformerOutput:
        """srcs, pos_embeds: per level [N, C, h_l, w_l]; masks: per level [N, h_l, w_l] (True = padding);
        query_embed [Q, 2C] (position | content), None for two-stage."""
        shapes = [(src.shape[2], src.shape[3]) for src in srcs]
        src_flatten = torch.cat([src.flatten(2).transpose(1, 2) for src in srcs], 1)  # [N, S, C]
        mask_flatten = torch.cat([mask.flatten(1) for mask in masks], 1)  # [N, S]
        lvl_pos = [
            pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1)
            for level, pos in enumerate(pos_embeds)
        ]
        pos_flatten = torch.cat(lvl_pos, 1)  # [N, S, C]
        ratios = torch.stack([valid_ratios(m) for m in masks], 1).to(src_flatten.dtype)  # [N, L, 2]
        memory = self.encoder(src_flatten, shapes, ratios, pos_flatten, mask_flatten)  # [N, S, C]

        n, _, c = memory.shape
        enc_class = enc_coord = None
        if self.two_stage:
            output_memory, output_proposals = encoder_output_proposals(memory, mask_flatten, shapes)
            output_memory = self.enc_output_norm(self.enc_output(output_memory))
            assert self.decoder.class_embed is not None and self.decoder.bbox_embed is not None
            layers = self.decoder.num_layers
            enc_class = self.decoder.class_embed[layers](output_memory)  # [N, S, classes]
            enc_coord = self.decoder.bbox_embed[layers](output_memory) + output_proposals  # [N, S, 4]
            topk = torch.topk(enc_class[..., 0], self.two_stage_num_proposals, dim=1)[1]  # [N, Q]
            topk_coords = torch.gather(enc_coord, 1, topk.unsqueeze(-1).repeat(1, 1, 4)).detach()
            reference_points = topk_coords.sigmoid()  # [N, Q, 4]
            pos_trans = self.pos_trans_norm(
                self.pos_trans(proposal_pos_embed(topk_coords, c // 2).to(memory.dtype))
            )
            query_pos, tgt = torch.split(pos_trans, c, dim=2)  # [N, Q, C] each
        else:
            assert query_embed is not None
            query_pos, tgt = torch.split(query_embed, c, dim=1)
            query_pos = query_pos.unsqueeze(0).expand(n, -1, -1)  # [N, Q, C]
            tgt = tgt.unsqueeze(0).expand(n, -1, -1)
            reference_points = self.reference_points(query_pos).sigmoid()  # [N, Q, 2]
        hs, inter_references = self.decoder(
            tgt, reference_points, memory, shapes, ratios, query_pos, mask_flatten
        )
        return TransformerOutput(hs, reference_points, inter_references, enc_class, enc_coord)
