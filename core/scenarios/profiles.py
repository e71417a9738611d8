"""Hardware and model profiles behind the scenarios, each number with its source.

Conventions (units of ``core.model``): work in GFLOP (for non-numeric work such as decoding,
ETL or graph search: billions of basic operations, "GFLOP-equivalent"), speed in GFLOP/s,
memory in GB, data in MB, power in W, cost in US dollars per hour.

How a node's speed is derived: ``Node.speed`` is the *effective* throughput on the reference
task kind (``REFERENCE_KIND``, transformer inference), i.e. the datasheet peak times the
utilisation that kind reaches (``UTILISATION``). Other task kinds reach other fractions of the
same peak; ``speed_factors()`` turns the table into ``Cluster.speed_factors`` so that a GPU is
thousands of times faster than its host CPU share at transformers but no faster at ETL.

Labels used in the comments: "datasheet"/"paper" = a published number; "derived" = arithmetic
on published numbers, shown; "assumption" = our modelling choice, with the reasoning.
Prices are public list prices at the time of writing and change; they set relative costs only.
"""

from __future__ import annotations

from dataclasses import dataclass

HOURS_3_YEARS = 3 * 365 * 24  # assumption: edge boxes are amortised over 3 years (26,280 h)

# Idle power: datasheets give TDP only. Assumptions:
#  * CPU servers idle at ~50% of peak power (Barroso & Hoelzle, "The Case for
#    Energy-Proportional Computing", IEEE Computer 40(12), 2007: servers draw about half of
#    their peak power when idle).
#  * Accelerators and edge modules idle at ~20% of TDP (assumption: an idle datacentre GPU
#    with clocks down but memory powered; used uniformly so that no device is favoured).
CPU_IDLE_SHARE = 0.5
ACCELERATOR_IDLE_SHARE = 0.2


@dataclass(frozen=True)
class Hardware:
    """One node type. ``peak_gflops`` is the peak at the precision inference uses on it."""

    name: str
    kind: str  # node kind: "gpu", "cpu" or "edge"
    peak_gflops: float
    memory: float  # GB
    busy_power: float  # W (TDP)
    idle_power: float  # W
    cost_per_hour: float  # USD
    source: str


# --- GPUs ------------------------------------------------------------------------------------
# NVIDIA A100 SXM4 40GB (cloud, newer generation). NVIDIA A100 Tensor Core GPU datasheet (2021):
# FP16 Tensor Core 312 TFLOPS dense (624 with sparsity), FP32 19.5 TFLOPS, 40 GB HBM2,
# 1,555 GB/s, max TDP 400 W. Price: AWS EC2 p4d.24xlarge (8x A100 40GB) on-demand, us-east-1,
# Linux, $32.7726/h (AWS EC2 on-demand price list, 2024) -> $4.0966 per GPU-hour (derived).
A100 = Hardware(
    name="a100", kind="gpu", peak_gflops=312_000.0, memory=40.0,
    busy_power=400.0, idle_power=400.0 * ACCELERATOR_IDLE_SHARE, cost_per_hour=32.7726 / 8,
    source="NVIDIA A100 datasheet; AWS p4d.24xlarge on-demand $32.7726/h / 8 GPUs",
)

# NVIDIA T4 (cloud, older/inference generation). NVIDIA T4 Tensor Core GPU datasheet (2019):
# mixed-precision (FP16/FP32) 65 TFLOPS, FP32 8.1 TFLOPS, 16 GB GDDR6, 320 GB/s, 70 W.
# Price: AWS EC2 g4dn.xlarge (1x T4, 4 vCPU, 16 GiB) on-demand us-east-1 $0.526/h (2024).
T4 = Hardware(
    name="t4", kind="gpu", peak_gflops=65_000.0, memory=16.0,
    busy_power=70.0, idle_power=70.0 * ACCELERATOR_IDLE_SHARE, cost_per_hour=0.526,
    source="NVIDIA T4 datasheet; AWS g4dn.xlarge on-demand $0.526/h",
)

# NVIDIA RTX A6000 (on-site server GPU in the hospital). NVIDIA RTX A6000 datasheet (2020):
# 48 GB GDDR6 with ECC, 768 GB/s, max power 300 W, FP32 38.7 TFLOPS, Tensor performance
# 309.7 TFLOPS *with sparsity* -> 154.8 TFLOPS dense FP16 (derived: sparsity doubles the rate).
# Cost: on-site hardware has no hourly price; we charge the public on-demand price of the same
# GPU as an opportunity cost: Lambda Cloud 1x RTX A6000 $0.80/h (lambdalabs.com pricing, 2024).
A6000 = Hardware(
    name="a6000", kind="gpu", peak_gflops=154_800.0, memory=48.0,
    busy_power=300.0, idle_power=300.0 * ACCELERATOR_IDLE_SHARE, cost_per_hour=0.80,
    source="NVIDIA RTX A6000 datasheet; Lambda Cloud 1x A6000 on-demand $0.80/h",
)

# --- CPU servers -----------------------------------------------------------------------------
# AWS EC2 c6i.8xlarge: 32 vCPU = 16 physical cores of an Intel Xeon Platinum 8375C (Ice Lake,
# 32 cores, 2.9 GHz base, 300 W TDP; Intel ARK), 64 GiB. On-demand us-east-1 $1.36/h (2024).
# Peak FP32 (derived): 16 cores x 2.9 GHz x 64 FLOP/cycle (two AVX-512 FMA units x 16 lanes x
# 2 FLOP) = 2,969.6 GFLOP/s; base clock because AVX-512 code does not sustain turbo clocks.
# Power (derived): half the socket's 300 W TDP = 150 W.
CPU_SERVER = Hardware(
    name="xeon16", kind="cpu", peak_gflops=16 * 2.9 * 64, memory=64.0,
    busy_power=150.0, idle_power=150.0 * CPU_IDLE_SHARE, cost_per_hour=1.36,
    source="Intel ARK Xeon Platinum 8375C; AWS c6i.8xlarge on-demand $1.36/h",
)

# --- Edge boxes ------------------------------------------------------------------------------
# NVIDIA Jetson AGX Orin 64GB. Jetson AGX Orin Series Technical Brief v1.2 (NVIDIA, 2022):
# 2048-core Ampere GPU with 64 Tensor Cores, GPU 170 sparse INT8 TOPS, 5.3 FP32 TFLOPS,
# 64 GB LPDDR5 204.8 GB/s (shared with the CPU), module power 15-60 W.
# Dense FP16 tensor (derived): 170 sparse INT8 / 2 (sparsity) / 2 (INT8 is twice FP16) = 42.5
# TFLOPS. Cost (derived): Jetson AGX Orin 64GB Developer Kit list price $1,999 amortised over
# 3 years = $0.0761/h.
ORIN = Hardware(
    name="orin", kind="edge", peak_gflops=42_500.0, memory=64.0,
    busy_power=60.0, idle_power=60.0 * ACCELERATOR_IDLE_SHARE, cost_per_hour=1999.0 / HOURS_3_YEARS,
    source="NVIDIA Jetson AGX Orin Technical Brief v1.2; dev kit $1,999 over 3 years",
)

# NVIDIA Jetson AGX Xavier 32GB (older edge generation). NVIDIA Jetson AGX Xavier datasheet:
# 512-core Volta GPU with 64 Tensor Cores, 32 TOPS INT8, 11 TFLOPS FP16, 32 GB LPDDR4x
# 136.5 GB/s, 10/15/30 W modes. Cost (derived): Developer Kit launch price $1,299 (2018) over
# 3 years = $0.0494/h.
XAVIER = Hardware(
    name="xavier", kind="edge", peak_gflops=11_000.0, memory=32.0,
    busy_power=30.0, idle_power=30.0 * ACCELERATOR_IDLE_SHARE, cost_per_hour=1299.0 / HOURS_3_YEARS,
    source="NVIDIA Jetson AGX Xavier datasheet; dev kit $1,299 over 3 years",
)

HARDWARE = (A100, T4, A6000, CPU_SERVER, ORIN, XAVIER)

# --- Utilisation of peak by task kind ----------------------------------------------------------
TASK_KINDS = ("cnn", "transformer", "llm", "gnn", "tabular", "etl", "graph_search")
REFERENCE_KIND = "transformer"

# Fraction of a node's ``peak_gflops`` each task kind achieves (assumptions, reasoning below).
#  * transformer: large dense GEMMs. Well-tuned large-model training reaches ~46% model FLOPs
#    utilisation (Chowdhery et al., "PaLM", 2022, Table 3); batched inference with framework
#    overhead: assume 0.30 on GPUs, 0.25 on CPUs (oneDNN GEMMs), 0.15 on Jetson (power-capped
#    clocks in the 60 W / 30 W modes).
#  * cnn: convolutions map to implicit GEMM with lower arithmetic intensity in early layers and
#    3D convs: assume 0.25 (GPU), 0.20 (CPU, edge).
#  * llm (report generation, prefill + batched decode): prefill is compute-bound (0.30), decode
#    reads every weight once per token: at batch 8 and FP16 (1 FLOP per byte) the utilisation is
#    8 x bandwidth / peak = 8 x 1,555 / 312,000 = 0.040 on an A100 (T4: 0.039, A6000: 0.040,
#    the three ratios agree within 3%). For 1,500 prompt + 400 generated tokens the time-weighted
#    utilisation is 1,900 / (1,500/0.30 + 400/0.040) = 0.127 (derived) -> 0.12. Jetson Orin:
#    prefill 0.15, decode 8 x 204.8 / 42,500 = 0.039 -> 1,900 / (10,000 + 10,260) = 0.094 ->
#    0.09. CPU (FP32 weights, 0.5 FLOP/byte, half a socket's 204.8 GB/s): decode
#    8 x 0.5 x 102.4 / 2,970 = 0.138, prefill 0.25 -> 1,900 / (6,000 + 2,900) = 0.21 -> 0.20.
#  * gnn (spatio-temporal graph forecaster): sparse/irregular, small graphs, memory-bound:
#    assume 0.03 (GPU), 0.05 (CPU, caches hold the graph), 0.02 (edge).
#  * tabular, etl, graph_search: branchy scalar code (tree ensembles, decoding, resampling,
#    Dijkstra/A*) that runs on the CPU cores. On a CPU server assume 0.02 / 0.01 / 0.01 of the
#    SIMD peak (single-digit GFLOP/s per core, memory-bound). On a GPU node or a Jetson it runs
#    on the host's share of CPU cores, so relative to the *accelerator* peak it is tiny: 1e-4
#    (A100: 31 GFLOP/s, about one CPU server's ETL rate; T4: 6.5) and 5e-5 for graph search.
UTILISATION: dict[str, dict[str, float]] = {
    "gpu": {"cnn": 0.25, "transformer": 0.30, "llm": 0.12, "gnn": 0.03,
            "tabular": 1e-4, "etl": 1e-4, "graph_search": 5e-5},
    "cpu": {"cnn": 0.20, "transformer": 0.25, "llm": 0.20, "gnn": 0.05,
            "tabular": 0.02, "etl": 0.01, "graph_search": 0.01},
    "edge": {"cnn": 0.20, "transformer": 0.15, "llm": 0.09, "gnn": 0.02,
             "tabular": 1e-4, "etl": 1e-4, "graph_search": 5e-5},
}


def effective_speed(hw: Hardware) -> float:
    """GFLOP/s the node sustains on the reference kind (what ``Node.speed`` holds)."""
    return hw.peak_gflops * UTILISATION[hw.kind][REFERENCE_KIND]


def speed_factors() -> dict[str, dict[str, float]]:
    """``Cluster.speed_factors``: each kind's utilisation relative to the reference kind."""
    return {
        node_kind: {task_kind: u / row[REFERENCE_KIND] for task_kind, u in row.items()}
        for node_kind, row in UTILISATION.items()
    }


# --- Networks ----------------------------------------------------------------------------------
# Bandwidths in MB/s (1 Gb/s = 125 MB/s), latencies in s.
#  * Hospital / metro LAN 10 Gb/s, cloud placement group 25 Gb/s: the 10-25 Gb/s LAN;
#    25 Gb/s is AWS's "up to 25 Gigabit" networking of g4dn.xlarge/c6i.8xlarge (EC2 instance
#    type specs). LAN latency 0.2 ms / cloud 0.1 ms (assumption: one or two switch hops).
#  * Site or hospital to cloud WAN: 1 Gb/s, 20 ms (issue: "WAN to cloud 1 Gb/s ~20 ms").
#  * Edge uplinks: 100 Mb/s (issue), 10 ms to the metro data centre, 30 ms to the cloud
#    (assumption: WAN latency plus an access hop). Edge boxes in one cabinet share 1 Gb/s
#    Ethernet, 0.5 ms (assumption: the boxes' gigabit ports).
LAN_10G = (1250.0, 0.0002)
CLOUD_25G = (3125.0, 0.0001)
WAN_1G = (125.0, 0.020)
EDGE_LAN_1G = (125.0, 0.0005)
EDGE_UPLINK_METRO = (12.5, 0.010)
EDGE_UPLINK_CLOUD = (12.5, 0.030)


# --- Models ------------------------------------------------------------------------------------
def transformer_gflop(non_embedding_params: float, positions: float, *, layers: int = 0,
                      context: int = 0, width: int = 0) -> float:
    """Forward FLOPs of a transformer: 2 N per position plus 2 n_layer n_ctx d_attn attention
    (Kaplan et al., "Scaling Laws for Neural Language Models", 2020, Table 1)."""
    per_position = 2.0 * non_embedding_params + 2.0 * layers * context * width
    return per_position * positions / 1e9


def bert_base_nonembedding_params() -> float:
    """12 layers x 12 d^2 with d = 768 (Devlin et al., BERT, 2019: L=12, H=768, 110M total)."""
    return 12 * 12 * 768.0 ** 2  # 84.9M


# 3D segmentation: nnU-Net full-resolution 3D U-Net, 412.65 GFLOPs per 128x128x64 patch as
# reported in Shaker et al., "UNETR++" (arXiv:2212.04497), Table 1 (Synapse; the authors count
# a multiply-add as one FLOP, so real FLOPs may be up to 2x; we keep the published number).
NNUNET_GFLOP_PER_PATCH = 412.65
NNUNET_PATCH = (128, 128, 64)
# nnU-Net's default inference slides the patch with 50% overlap and mirrors along all three
# axes (8 passes per patch) (Isensee et al., Nature Methods 18, 2021, "Methods: Inference").
NNUNET_STEP = 0.5
NNUNET_MIRRORS = 8
# nnU-Net 3D full-res needs about 7.7 GB GPU memory (nnU-Net documentation, "resenc_presets":
# VRAM column, nnU-Net (org.) 7.70 GB).
NNUNET_MEMORY = 8.0

# ResNet-50 at 224x224: 3.8e9 FLOPs (multiply-adds) (He et al., CVPR 2016, Table 1).
RESNET50_GFLOP = 3.8
RESNET50_MEMORY = 2.0  # assumption: 25.6M params (He et al.) + activations of a crop batch
# ResNet-18 at 224x224: 1.8e9 FLOPs (He et al., CVPR 2016, Table 1).
RESNET18_GFLOP_224 = 1.8

# CT geometry: a 512x512 slice of 16-bit voxels is 524,288 bytes (DICOM Bits Allocated = 16),
# so a series of 200-1,000 slices is the 100-500 MB.
CT_SLICE_MB = 512 * 512 * 2 / 1e6
# DICOM preprocessing (decode, HU rescale, third-order spline resampling, normalisation):
# assumption ~200 operations per voxel (a cubic spline reads 4^3 = 64 coefficients, x2 for the
# multiply-add, plus decode and normalisation).
DICOM_OPS_PER_VOXEL = 200.0

# Clinical notes: ClinicalBERT (Alsentzer et al., 2019) is BERT-base; a 512-token document costs
# transformer_gflop(84.9M, 512, layers=12, context=512, width=768) = 91.8 GFLOP (derived).
BERT_MAX_TOKENS = 512
BERT_MEMORY = 1.5  # assumption: 110M params in FP32 (0.44 GB) + activations of a small batch

# Lab results: gradient-boosted trees; XGBoost's default max_depth is 6 (XGBoost docs,
# "Parameters"); assumption: 500 trees and ~10 operations per node visit.
GBM_TREES = 500
GBM_DEPTH = 6
GBM_OPS_PER_VISIT = 10.0

# Report generation: Llama 3.2 3B, 3.21B parameters (Meta model card, 2024); FLOPs = 2 x params
# per token (Kaplan et al. 2020). FP16 weights 6.4 GB + KV cache -> 8 GB (derived/assumption).
REPORT_LLM_PARAMS = 3.21e9
REPORT_LLM_MEMORY = 8.0

# Speech: Whisper small, 244M params, 12 layers, width 768 (Radford et al., "Robust Speech
# Recognition via Large-Scale Weak Supervision", 2022, Table 1). A 30 s window is 3,000 mel
# frames, 1,500 encoder positions after the stride-2 convolution (ibid., section 2.3).
WHISPER_WINDOW_S = 30.0
WHISPER_ENCODER_POSITIONS = 1500
WHISPER_ENC_PARAMS = 12 * 12 * 768.0 ** 2  # derived: 12 layers x 12 d^2 = 84.9M
# Decoder: self- and cross-attention + MLP = 16 d^2 per layer, plus the 51,865 x 768 output
# projection (derived from Table 1's sizes) = 113M + 40M.
WHISPER_DEC_PARAMS = 12 * 16 * 768.0 ** 2 + 51_865 * 768.0
WHISPER_MEMORY = 2.0  # assumption: 244M params in FP16 (0.5 GB) + beams and activations
# Conversational speech ~150 words/min (assumption, common speaking-rate figure) x ~1.3 BPE
# tokens per word (assumption) = 3.25 tokens/s.
SPEECH_TOKENS_PER_S = 150 / 60 * 1.3

# Lip reading: AV-HuBERT BASE, 103M params, 12 layers, width 768, video at 25 fps, 88x88 mouth
# crops through a ResNet-18 with a 3D-conv stem (Shi et al., "Learning Audio-Visual Speech
# Representation by Masked Multimodal Cluster Prediction", ICLR 2022).
LIP_FPS = 25.0
LIP_ENC_PARAMS = 12 * 12 * 768.0 ** 2
# Visual front end per frame (derived): ResNet-18's 1.8 GFLOPs scaled by pixel count
# (88/224)^2 = 0.154 -> 0.278 GFLOP.
LIP_FRONTEND_GFLOP = RESNET18_GFLOP_224 * (88 / 224) ** 2
AVHUBERT_MEMORY = 2.0  # assumption
# Audio-visual fusion: assumption, a 6-layer width-768 cross-attention decoder (12 d^2 params
# per layer = 42.5M) over the 25 Hz fused sequence.
AV_FUSION_PARAMS = 6 * 12 * 768.0 ** 2
# Audio front end: 16 kHz, 25 ms window, 10 ms hop (100 frames/s), 512-point FFT (~5 N log2 N
# = 23k FLOP) + 80-band mel filterbank (2 x 80 x 257 = 41k) ~ 65k FLOP per frame (derived from
# Whisper's front end, Radford et al. 2022 section 2.2: 80 channels, 25 ms, 10 ms stride).
AUDIO_FRONTEND_FLOP_PER_S = 100 * 65e3
# Capture and demux on the site box: decode 1080p video at 25 fps and track the face to crop
# the mouth of a 720p conference camera. Assumption: ~20 operations per decoded pixel ->
# 1280 x 720 x 25 x 20 = 0.46 GOP/s.
CAPTURE_OPS_PER_S = 1280 * 720 * 25 * 20.0
AUDIO_MB_PER_S = 16_000 * 2 / 1e6  # 16 kHz 16-bit mono PCM (derived)
MOUTH_CROPS_MB_PER_S = 96 * 96 * LIP_FPS / 1e6  # 96x96 8-bit grey crops (AV-HuBERT crops 96, trains on 88)

# Traffic: camera incident detection with YOLOv8n, 8.7 GFLOPs at 640x640 (Ultralytics YOLOv8
# model table), re-identification of each detected vehicle with OSNet x1.0, 0.98 GFLOPs
# (978.9M mult-adds, Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification",
# ICCV 2019, Table 1).
YOLOV8N_GFLOP = 8.7
OSNET_GFLOP = 0.9789
DETECTOR_MEMORY = 2.0  # assumption: TensorRT engines for both models + frame buffers
# Graph WaveNet-style forecaster (Wu et al., IJCAI 2019): 8 layers, 32 residual channels, 12
# input steps, diffusion of order K = 2 over 3 supports (forward, backward, adaptive) - the
# paper's METR-LA configuration. Per layer and step (derived): graph convolution
# 2 x N^2 x C x K x 3 + 1x1/gated convolutions 2 x N x C^2 x 6.
GWN_LAYERS, GWN_CHANNELS, GWN_STEPS, GWN_ORDER, GWN_SUPPORTS = 8, 32, 12, 2, 3
# Probabilistic forecast by 20 Monte-Carlo dropout samples (assumption).
GWN_SAMPLES = 20
GNN_MEMORY = 1.0  # assumption
